package cli

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestBuildInfo: the version and commit come from the build information
// (module version, vcs.revision, vcs.modified) or from -ldflags stamps.
func TestBuildInfo(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	b := buildFrom(info)
	if got := b.String(); got != "v1.2.3 (commit 0123456789ab, modified) go1.26.8" {
		t.Errorf("String() = %q", got)
	}
	if b := buildFrom(&debug.BuildInfo{GoVersion: "go1.26.8"}).stamped("v2.0.0", "fedcba"); b.Version != "v2.0.0" || b.Commit != "fedcba" {
		t.Errorf("stamped: %+v", b)
	}
	if b := b.stamped("", "other"); b.Commit != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("a stamp overrode the VCS commit: %+v", b)
	}
}

// TestVersionCommand builds the binary stamped as make build stamps it and
// checks both `reconciler version` and `--version`. Before, neither existed.
func TestVersionCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "reconciler")
	pkg := "github.com/fleetops/reconciler/cmd/reconciler/cli"
	gobuild := exec.Command("go", "build", "-ldflags", "-X "+pkg+".stampedVersion=v9.8.7 -X "+pkg+".stampedCommit=abcdef0123456789", "-o", bin, "..")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "reconciler v9.8.7 (commit abcdef012345) "+goVersion(t, bin) {
		t.Errorf("--version: %q %v", out, err)
	}
	out, err = exec.Command(bin, "version", "--output", "json").Output()
	var b build
	if err != nil || json.Unmarshal(out, &b) != nil || b.Version != "v9.8.7" || b.Commit != "abcdef0123456789" || !strings.HasPrefix(b.Go, "go1.") {
		t.Errorf("version --output json: %s %v", out, err)
	}
}

// goVersion is the Go version a binary was built with.
func goVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command("go", "version", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	return f[len(f)-1]
}
