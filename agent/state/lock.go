package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockName is the lock file in the state directory.
const LockName = "agent.lock"

// ErrLocked means another agent holds the state directory.
var ErrLocked = errors.New("state directory in use by another agent")

// Lock is an exclusive hold on a state directory: one agent per directory,
// or a second one adopts the first one's workloads (and, under another node
// name, stops them). The hold is an flock on <dir>/agent.lock, which holds
// the holder's pid; the kernel releases it when the process ends, however
// it ends, so a stale file never blocks a restart.
type Lock struct {
	f *os.File
}

// Acquire takes the lock on dir without waiting. When another process (or
// another Lock in this one) holds it the error wraps ErrLocked and names
// the holder's pid.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	p := filepath.Join(dir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s: %w (pid %s holds %s): stop it, or give this agent its own --state-dir", dir, ErrLocked, holder(f), p)
		}
		return nil, fmt.Errorf("lock state dir: flock %s: %w", p, err)
	}
	// The pid is for the next one's message: the flock is the lock, so a
	// failure to note it does not fail the agent.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// holder reads the pid the holder wrote ("unknown" when there is none).
func holder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	if pid := strings.TrimSpace(string(b[:n])); pid != "" {
		return pid
	}
	return "unknown"
}

// Release gives the lock up (closing the file releases the flock).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
