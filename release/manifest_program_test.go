package release

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProgramConfinedToRelease: whatever node variables made of it, the
// program a node runs is an executable file of the release; an absolute
// path, a way up, a symlink leaving the release, a directory or a file
// without an execute bit is refused, naming the program.
func TestProgramConfinedToRelease(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "bin", "web"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "bin", "data"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "evil"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Symlink("web", filepath.Join(dir, "bin", "alias")))
	must(os.Symlink("/bin/sh", filepath.Join(dir, "bin", "sh")))
	must(os.Symlink(filepath.Join(outside, "evil"), filepath.Join(dir, "bin", "evil")))
	must(os.Symlink(outside, filepath.Join(dir, "ext")))

	for _, ok := range []string{"bin/web", "bin/alias"} {
		p, err := Program(dir, ok)
		if err != nil || p != filepath.Join(dir, ok) {
			t.Errorf("Program(%q) = %q, %v; want %q", ok, p, err, filepath.Join(dir, ok))
		}
	}
	for _, bad := range []string{"/bin/sh", "../../bin/sh", "bin/../../../bin/sh", "bin/sh", "bin/evil",
		"ext/evil", "bin", ".", "", "bin/data", "bin/missing", "./bin/web", "bin//web", "bin/web\x00"} {
		p, err := Program(dir, bad)
		if err == nil || !errors.Is(err, ErrOutsideRelease) || !strings.Contains(err.Error(), "program ") {
			t.Errorf("Program(%q) = %q, %v; want refused", bad, p, err)
		}
	}
	if _, err := Program("", "bin/web"); err == nil {
		t.Error("no release directory: accepted")
	}
}

// TestManifestRefusesWhatAReleaseMayNotTouch: unix socket paths that are
// not clean, loader variables set from node variables, drain timeouts that
// would hold an app for days. Each was accepted before.
func TestManifestRefusesWhatAReleaseMayNotTouch(t *testing.T) {
	base := `"app": "web", "version": "1.0.0", "command": ["bin/web"]`
	unix := func(a string) string {
		return `{` + base + `, "listen": [{"name": "s", "network": "unix", "address": "` + a + `"}]}`
	}
	for _, c := range []struct{ json, want string }{
		{unix("../../etc/passwd"), `listen[0].address: "../../etc/passwd": want a clean socket path`},
		{unix("/run/../etc/passwd"), `listen[0].address: "/run/../etc/passwd": want a clean socket path`},
		{unix("./web.sock"), `want a clean socket path`},
		{unix("/" + strings.Repeat("a", 120)), `bytes, at most 107`},
		{`{` + base + `, "env": {"LD_PRELOAD": "${LIB}"}}`, `env.LD_PRELOAD: "${LIB}": a variable that chooses code to load or run may not use node variables`},
		{`{` + base + `, "env": {"PATH": "${DIR}:/usr/bin"}}`, `env.PATH:`},
		{`{` + base + `, "env": {"ERL_FLAGS": "-eval ${X}"}}`, `env.ERL_FLAGS:`},
		{`{` + base + `, "env": {"NODE_OPTIONS": "--require ${X}"}}`, `env.NODE_OPTIONS:`},
		{`{` + base + `, "drainTimeout": "100h"}`, `drainTimeout: "100h": want a positive Go duration such as "10s", at most 1h0m0s`},
	} {
		_, err := ParseManifest([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.json, err, c.want)
		}
	}
	for _, ok := range []string{unix("web.sock"), unix("run/web.sock"), unix("/run/web/web.sock"), unix("@web"),
		`{` + base + `, "env": {"LD_LIBRARY_PATH": "lib", "PATH": "/usr/bin:/bin", "MODE": "${MODE}"}}`} {
		if _, err := ParseManifest([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
