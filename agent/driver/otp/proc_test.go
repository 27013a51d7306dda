package otp

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processesUnder returns the live (not zombie) processes whose command line
// mentions dir, epmd included or not, waiting up to ten seconds for exiting
// ones to go. Linux only; elsewhere it finds none.
func processesUnder(dir string, withEPMD bool) []int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := scanProcesses(dir, withEPMD)
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(50 * time.Millisecond) // poll: processes exit on their own
	}
}

func scanProcesses(dir string, withEPMD bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if !withEPMD && filepath.Base(argv0) == "epmd" {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// pid (comm) state ...: zombies are dead already.
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// pidAlive reports whether pid is a live (not zombie) process.
func pidAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && !strings.HasPrefix(string(stat[i+1:]), " Z")
}
