package isolate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// Defaults of Loader.
const (
	DefaultTimeout = 20 * time.Second
	DefaultMemory  = 1 << 30 // 1 GiB
)

// Loader evaluates spec files in a child process running Serve. Zero values
// take the defaults in comments.
type Loader struct {
	// Path is the program to run (default: this executable, as
	// /proc/self/exe: the binary this process runs even once a package
	// upgrade has replaced the file, so parent and child always agree).
	Path string
	// Args are its arguments (default: "__eval-spec", the hidden command of
	// the reconciler binary). A test binary that runs such a command
	// in-process is re-executed with them, so its TestMain must serve them
	// (cmd/reconciler/cli/script_test.go), or every test runs again.
	Args []string
	// Env is added to the child's environment (tests that re-exec
	// themselves set a variable here).
	Env []string
	// Timeout bounds one evaluation, in wall-clock time (default 20s).
	Timeout time.Duration
	// Memory bounds the address space one evaluation may map, in bytes
	// (default 1 GiB).
	Memory int64
	// TimeoutFlag and MemoryFlag name the settings in errors (default
	// "--spec-timeout" and "--spec-memory", the agent's flags).
	TimeoutFlag, MemoryFlag string
}

// LimitError says an evaluation went over Timeout or Memory. It wraps
// spec.ErrLimit: the spec is refused like any invalid one, and loading the
// same files again would be refused again.
type LimitError struct {
	Memory  bool          // false: the time limit
	Limit   string        // "20s", "1024 MiB"
	Flag    string        // the setting to raise
	Elapsed time.Duration // until the refusal
}

func (e *LimitError) Error() string {
	what := "took more than " + e.Limit
	if e.Memory {
		what = "needed more than " + e.Limit + " of memory"
	}
	return fmt.Sprintf("evaluation %s (limit %s; stopped after %v): the spec costs too much to evaluate (docs/spec.md, \"Limits\"): declare fewer fields in one comprehension, or raise %s",
		what, e.Flag, e.Elapsed.Round(time.Millisecond), e.Flag)
}

func (e *LimitError) Unwrap() error { return spec.ErrLimit }

// LoadSpec evaluates files (name -> content, as spec.LoadFiles takes them)
// in a child process and returns what spec.LoadFiles returned there: the
// fleet, *spec.Errors with their positions, or another error as text. An
// evaluation over a limit returns a *LimitError; a child that could not run
// returns an error naming the program.
func (l Loader) LoadSpec(ctx context.Context, files map[string][]byte) (*spec.Fleet, error) {
	if len(files) == 0 {
		return nil, spec.ErrNoFiles
	}
	l = l.withDefaults()
	in, err := json.Marshal(request{Memory: l.Memory, CPU: 2 * l.Timeout, Files: files})
	if err != nil {
		return nil, fmt.Errorf("evaluate spec: %w", err)
	}
	path, argv0 := l.Path, l.Path
	if path == "" {
		path, argv0 = "/proc/self/exe", os.Args[0] // argv[0] as this process was started
	}
	run, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	cmd := exec.CommandContext(run, path, l.Args...)
	cmd.Args[0] = argv0
	cmd.Env = append(os.Environ(), l.Env...)
	cmd.Stdin = bytes.NewReader(in)
	out, stderr := &capped{max: 64 << 20}, &capped{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, stderr
	// The child is killed when the thread that started it ends (the agent
	// dies): no orphan keeps evaluating; RLIMIT_CPU is the backstop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		return nil, l.failure(ctx, run, cmd, err, stderr.String(), elapsed)
	}
	var resp response
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil || out.over {
		return nil, fmt.Errorf("evaluate spec: %s answered %d bytes that are not a result: %v", path, out.Len(), err)
	}
	return resp.result()
}

// failure explains why the child did not answer: the parent's context, a
// limit, or a child that broke.
func (l Loader) failure(ctx, run context.Context, cmd *exec.Cmd, err error, stderr string, elapsed time.Duration) error {
	if ctx.Err() != nil {
		return fmt.Errorf("evaluate spec: %w", ctx.Err())
	}
	timeout := &LimitError{Limit: l.Timeout.String(), Flag: l.TimeoutFlag, Elapsed: elapsed}
	if run.Err() != nil {
		return timeout
	}
	if outOfMemory(stderr) {
		return &LimitError{Memory: true, Limit: fmt.Sprintf("%d MiB", l.Memory>>20), Flag: l.MemoryFlag, Elapsed: elapsed}
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() &&
		(ws.Signal() == syscall.SIGXCPU || ws.Signal() == syscall.SIGKILL) {
		return timeout // RLIMIT_CPU
	}
	return fmt.Errorf("evaluate spec in %s: %w: %s", cmd.Path, err, lastLines(stderr, 5))
}

// outOfMemory reports whether the child's stderr shows the Go runtime (or
// the C library starting a thread) refused memory at RLIMIT_AS. A binary
// built with -race says "address space collisions", or ThreadSanitizer
// "failed to allocate", when a mapping fails.
func outOfMemory(stderr string) bool {
	for _, s := range []string{"out of memory", "cannot allocate memory", "pthread_create failed", "too many address space collisions", "ThreadSanitizer failed to allocate"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (l Loader) withDefaults() Loader {
	if l.Args == nil {
		l.Args = []string{"__eval-spec"}
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.Memory <= 0 {
		l.Memory = DefaultMemory
	}
	if l.TimeoutFlag == "" {
		l.TimeoutFlag = "--spec-timeout"
	}
	if l.MemoryFlag == "" {
		l.MemoryFlag = "--spec-memory"
	}
	return l
}

// capped is a buffer that keeps at most max bytes and remembers it dropped
// some: a child cannot make the parent hold more than that.
type capped struct {
	bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.over = true
		c.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.Buffer.Write(p)
}
