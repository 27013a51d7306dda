package otp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
)

// script runs one release root's start script, bin/<rel>, with the VM's
// environment.
type script struct {
	root    string // absolute release root
	rel     string // relx release name
	env     []string
	timeout time.Duration
	log     *slog.Logger
}

// ReleaseState is one release as release_handler:which_releases/0 sees it;
// Status is "permanent", "current", "old" or "unpacked".
type ReleaseState = reconciler.RuntimeRelease

// errNotRunning is returned by commands that need the VM when it is down.
var errNotRunning = errors.New("node is not running")

// run runs bin/<rel> with args and returns its output (stdout and stderr).
// The output goes to a file, not a pipe: `daemon` leaves run_erl behind,
// which would otherwise hold a pipe open.
func (s script) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	logDir := filepath.Join(s.root, "log")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return "", fmt.Errorf("run bin/%s %s: %w", s.rel, args[0], err)
	}
	out, err := os.CreateTemp(logDir, "reconciler-*.out")
	if err != nil {
		return "", fmt.Errorf("run bin/%s %s: %w", s.rel, args[0], err)
	}
	defer os.Remove(out.Name())
	defer out.Close()

	// A program of the unpacked release root, symlinks resolved.
	prog, err := release.Program(s.root, "bin/"+s.rel)
	if err != nil {
		return "", fmt.Errorf("run bin/%s %s: %w", s.rel, args[0], err)
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = s.root
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a signal meant for the agent does not reach the
	// script (nor the VM that `daemon` starts), and a timeout kills the
	// script's children (escript, erl_call) too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	runErr := cmd.Run()
	s.log.Debug("ran the release script", "cmd", "bin/"+s.rel+" "+args[0], "took", time.Since(start), "err", runErr)

	b, err := os.ReadFile(out.Name())
	text := strings.TrimSpace(string(b))
	if err != nil {
		return "", fmt.Errorf("run bin/%s %s: read output: %w", s.rel, args[0], err)
	}
	if runErr != nil {
		if strings.Contains(text, "Node is not running!") {
			return text, fmt.Errorf("bin/%s %s: %w", s.rel, args[0], errNotRunning)
		}
		return text, fmt.Errorf("bin/%s %s: %w: %s", s.rel, strings.Join(args, " "), runErr, summary(text))
	}
	return text, nil
}

// stop stops the VM with `bin/<rel> stop`, which returns once the VM's
// process is gone. A VM that is down already is not an error.
func (s script) stop(ctx context.Context) error {
	if !s.alive(ctx) {
		return nil
	}
	if _, err := s.run(ctx, "stop"); err != nil && s.alive(ctx) {
		return err
	}
	return nil
}

// alive reports whether the VM answers.
func (s script) alive(ctx context.Context) bool {
	out, err := s.run(ctx, "ping")
	return err == nil && strings.HasSuffix(out, "pong")
}

// pid returns the VM's OS pid.
func (s script) pid(ctx context.Context) (int, error) {
	out, err := s.run(ctx, "pid")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lastLines(out, 1)))
	if err != nil {
		return 0, fmt.Errorf("bin/%s pid: unexpected output %q", s.rel, out)
	}
	return pid, nil
}

// eval evaluates an Erlang expression in the VM and returns the printed
// result.
func (s script) eval(ctx context.Context, expr string) (string, error) {
	return s.run(ctx, "eval", expr)
}

// releases lists release_handler:which_releases/0 through `bin/<rel>
// versions`, newest version first.
func (s script) releases(ctx context.Context) ([]ReleaseState, error) {
	out, err := s.run(ctx, "versions")
	if err != nil {
		return nil, err
	}
	return parseVersions(out)
}

// parseVersions parses the output of install_upgrade.escript's versions:
//
//	Installed versions:
//	* 1.1.0	permanent
//	* 1.0.0	old
func parseVersions(out string) ([]ReleaseState, error) {
	var rs []ReleaseState
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "* ")
		if !ok {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("versions: unexpected line %q", sc.Text())
		}
		rs = append(rs, ReleaseState{Version: f[0], Status: f[1]})
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("versions: no release in %q", out)
	}
	sort.SliceStable(rs, func(i, j int) bool { return rank(rs[i].Status) < rank(rs[j].Status) })
	return rs, nil
}

// rank orders statuses: what runs first.
func rank(status string) int {
	switch status {
	case "current":
		return 0
	case "permanent":
		return 1
	case "old":
		return 2
	}
	return 3
}

// running returns the version the VM runs: the one marked current, else
// the permanent one.
func running(rs []ReleaseState) string {
	for _, want := range []string{"current", "permanent"} {
		for _, r := range rs {
			if r.Status == want {
				return r.Version
			}
		}
	}
	return ""
}

// status returns the status of version in rs, or "" when it is unknown.
func status(rs []ReleaseState, version string) string {
	for _, r := range rs {
		if r.Version == version {
			return r.Status
		}
	}
	return ""
}

// summary shortens a script's output for an error message: from its ERROR:
// line when it has one (install_upgrade.escript prints the reason as a
// multi-line Erlang term), else its last lines; whitespace runs collapsed.
func summary(out string) string {
	if i := strings.Index(out, "ERROR:"); i >= 0 {
		out = out[i:]
	} else {
		out = lastLines(out, 5)
	}
	out = strings.Join(strings.Fields(out), " ")
	if len(out) > 400 {
		out = out[:400] + " ..."
	}
	return out
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
