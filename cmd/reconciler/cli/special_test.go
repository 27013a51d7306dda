package cli

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVerifyRefusesSpecialFiles: verify and sign given a named pipe or a
// device as the signature, the file or the key exit 1 at once, saying
// what the path is. `verify --signature FIFO` blocked forever before
// internal/regfile.
func TestVerifyRefusesSpecialFiles(t *testing.T) {
	f := newFixture(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	must(t, syscall.Mkfifo(fifo, 0o644))
	file := filepath.Join(f.dir, "release.pub") // any regular file
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--key", f.pub, "--signature", fifo, file}, "named pipe"},
		{[]string{"verify", "--key", f.pub, "--signature", "/dev/zero", file}, "character device"},
		{[]string{"verify", "--key", fifo, "--signature", file, file}, "named pipe"},
		{[]string{"verify", "--key", f.pub, "--signature", file, fifo}, "named pipe"},
		{[]string{"verify", "--key", f.pub, "--signature", f.dir, file}, "directory"},
		{[]string{"sign", "--key", f.key, "--output-signature", filepath.Join(t.TempDir(), "s"), fifo}, "named pipe"},
	} {
		done := make(chan cliResult, 1)
		go func() { done <- f.run(c.args...) }()
		select {
		case r := <-done:
			if r.code != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%v: exit %d, stderr %q; want 1 naming a %s", c.args, r.code, r.stderr, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v blocked", c.args)
		}
	}
}
