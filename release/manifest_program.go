package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrOutsideRelease is returned (wrapped) by Program for a program that is
// not a file of the release.
var ErrOutsideRelease = errors.New("not a program of the release")

// Program returns the path of the program name in the release unpacked in
// dir: name, after every substitution of node variables, must be a clean
// relative slash path that resolves (symlinks included) to an executable
// regular file inside dir. This is the rule for everything a node runs (a
// workload's command[0], hooks, exec health checks): the fleet repo may pass
// arguments and values, never choose a program (docs/release-manifest.md,
// "What a release may touch").
func Program(dir, name string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("program %q: %w: %s", name, ErrOutsideRelease, fmt.Sprintf(format, args...))
	}
	if dir == "" {
		return fail("no release directory to run it from")
	}
	if strings.ContainsRune(name, 0) || !localPath(name) {
		return fail("want a path relative to the release, without '..' (checked after node variables are substituted)")
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fail("release directory: %v", err)
	}
	if root, err = filepath.Abs(root); err != nil {
		return fail("release directory: %v", err)
	}
	p := filepath.Join(root, filepath.FromSlash(name))
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fail("%v", err)
	}
	if rel, err := filepath.Rel(root, real); err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fail("resolves to %s, outside the release %s", real, root)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fail("%v", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("%s is not a regular file (%s)", real, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fail("%s is not executable", real)
	}
	return p, nil
}
