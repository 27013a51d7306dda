package makefile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDist: make dist builds each platform's binary, stamped with the
// version make reports, sums them in SHA256SUMS and signs every file with
// DIST_KEY, so `reconciler verify` and `sha256sum -c` accept them. The test
// builds this machine's platform only (a second one would compile every
// dependency again); the default list is checked with make -n.
func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	if plan := makeOut(t, "-n", "dist", "DIST_KEY=k"); !strings.Contains(plan, "./.ci/dist") {
		t.Fatalf("make -n dist:\n%s", plan)
	}
	script, err := os.ReadFile(filepath.Join(root, ".ci", "dist"))
	if err != nil || !strings.Contains(string(script), "linux/amd64 linux/arm64") {
		t.Fatalf(".ci/dist does not default to linux/amd64 and linux/arm64: %v", err)
	}

	// Without a key it refuses, naming what it needs.
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "dist", "DIST_DIR="+t.TempDir())
	cmd.Env = append(os.Environ(), "DIST_KEY=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "DIST_KEY") {
		t.Fatalf("make dist without DIST_KEY: %v\n%s", err, out)
	}

	work := t.TempDir()
	bin := filepath.Join(work, "reconciler")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/reconciler").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		c := exec.Command(name, args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "RECONCILER_PASSWORD=")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(work, bin, "keygen", "--output-key-prefix", "release")
	dist := filepath.Join(work, "dist")
	run(root, "make", "--no-print-directory", "dist", "DIST_KEY="+filepath.Join(work, "release.key"),
		"DIST_DIR="+dist, "DIST_PLATFORMS=linux/amd64", "VERSION=v9.8.7-test")

	name := "reconciler-v9.8.7-test-linux-amd64"
	run(dist, "sha256sum", "-c", "SHA256SUMS")
	if sums := run(dist, "cat", "SHA256SUMS"); !strings.Contains(sums, name) {
		t.Fatalf("SHA256SUMS does not list %s:\n%s", name, sums)
	}
	for _, f := range []string{name, "SHA256SUMS"} {
		run(dist, bin, "verify", "--key", filepath.Join(work, "release.pub"), "--signature", f+".sig", f)
	}
	if v := run(dist, "./"+name, "version"); !strings.Contains(v, "v9.8.7-test") {
		t.Fatalf("%s version: %s, want the stamped v9.8.7-test", name, v)
	}
}
