package cli

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFIFOsAreRefusedEverywhere: a named pipe given as trusted signers is
// refused at once (it blocked for ever before: the open waited for a
// writer); one among spec files is not read.
func TestFIFOsAreRefusedEverywhere(t *testing.T) {
	f := newFixture(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	must(t, syscall.Mkfifo(fifo, 0o644))
	for _, args := range [][]string{
		{"agent", "--once", "--repo", f.repo, "--node", "n1", "--state-dir", t.TempDir(), "--trust-key", f.pub, "--listen", "", "--trust-signer", fifo},
	} {
		done := make(chan cliResult, 1)
		go func() { done <- f.run(args...) }()
		select {
		case r := <-done:
			if r.code == 0 || !strings.Contains(r.stderr, "named pipe") {
				t.Errorf("%s: exit %d, want an error naming a named pipe:\n%s", args[0], r.code, r.stderr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s blocked on a FIFO", args[0])
		}
	}
}
