package state

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLockHelperProcess holds the lock of $STATE_LOCK_DIR until killed.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("STATE_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process for TestLockTwoProcesses")
	}
	if _, err := Acquire(dir); err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Minute)
}

// TestLockTwoProcesses: while a real process holds a state directory, a
// second Acquire fails at once naming the holder's pid; once it is killed
// (no clean-up), the directory can be taken again. Before, nothing locked
// the state directory: a second agent adopted the first one's workloads.
func TestLockTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "STATE_LOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper: %q", line)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("second Acquire: %v, want ErrLocked naming pid %d", err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	if _, err := Acquire(dir); !errors.Is(err, ErrLocked) { // two holds in one process conflict too
		t.Fatalf("second hold in-process: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if l, err = Acquire(dir); err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l.Release()
}
