package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/release"
)

// TestCommandRunsOnlyProgramsOfTheRelease: a command[0] that (after node
// variables) names a program outside the release, directly, by a way up or
// through a symlink of the release, is refused and nothing runs; it ran
// before.
func TestCommandRunsOnlyProgramsOfTheRelease(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "ran")
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(releases["1"])); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, nil)
	for _, argv0 := range []string{"/bin/sh", "bin/../../../../../../../../bin/sh", "bin/sh", "bin"} {
		r := rel("1", "127.0.0.1:0")
		r.Dir = dir
		r.Manifest.Command = []string{argv0, "-c", "touch " + victim}
		_, err := d.Switch(context.Background(), nil, r, nil2ok)
		if err == nil || !errors.Is(err, release.ErrOutsideRelease) || !strings.Contains(err.Error(), "command[0]") {
			t.Errorf("command[0] %q: %v, want refused", argv0, err)
		}
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("a program outside the release ran")
	}
}
