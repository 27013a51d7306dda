// Package systemd holds the example unit of the agent; its test checks the
// unit with systemd-analyze and its command line against the agent command.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unit reads reconciler-agent.service into its directives, continuation
// lines joined, comments dropped.
func unit(t *testing.T) (raw string, directives map[string][]string) {
	t.Helper()
	b, err := os.ReadFile("reconciler-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	raw = string(b)
	directives = map[string][]string{}
	joined := strings.ReplaceAll(raw, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("reconciler-agent.service: %q is not KEY=VALUE", line)
		}
		directives[k] = append(directives[k], v)
	}
	return raw, directives
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "reconciler")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/reconciler").CombinedOutput(); err != nil {
		t.Fatalf("go build reconciler: %v\n%s", err, out)
	}
	return bin
}

// TestUnitVerifies: systemd-analyze verify has nothing to say about the
// unit (it exits 0 on unknown keys and bad values, so any output fails).
func TestUnitVerifies(t *testing.T) {
	raw, _ := unit(t)
	bin := build(t)
	path := filepath.Join(t.TempDir(), "reconciler-agent.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(raw, "/usr/local/bin/reconciler", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify (Debian package systemd): %v\n%s", err, out)
	}
}

// TestUnitRunsTheAgent: ExecStart is the agent command with flags it has,
// its credentials are loaded, and stopping the unit leaves the workloads.
func TestUnitRunsTheAgent(t *testing.T) {
	_, d := unit(t)
	for key, want := range map[string]string{"KillMode": "process", "Restart": "always", "StateDirectory": "reconciler"} {
		if got := d[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	exec1 := d["ExecStart"]
	if len(exec1) != 1 {
		t.Fatalf("ExecStart = %q, want one", exec1)
	}
	args := strings.Fields(exec1[0])
	if args[0] != "/usr/local/bin/reconciler" || args[1] != "agent" {
		t.Fatalf("ExecStart runs %q, want /usr/local/bin/reconciler agent", args[:2])
	}
	creds := map[string]bool{}
	for _, c := range d["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		creds[name] = true
	}
	specifiers := strings.NewReplacer("%H", "node-1", "%S", "/var/lib", "%d", "/run/credentials/reconciler-agent.service")
	for i, a := range args {
		if strings.HasPrefix(a, "%d/") && !creds[strings.TrimPrefix(a, "%d/")] {
			t.Errorf("%s %s reads credential %s, which no LoadCredential= loads", args[i-1], a, a)
		}
		args[i] = specifiers.Replace(a)
	}
	// cobra parses every flag before it honours --help: an unknown or
	// malformed flag fails here.
	bin := build(t)
	cmd := exec.Command(bin, append(args[1:], "--help")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the unit's command line is not one the agent takes: %v\n%s", err, out)
	}
	bad := exec.Command(bin, "agent", "--no-such-flag", "--help")
	if bad.Run() == nil {
		t.Fatal("an unknown flag with --help exits 0: the check above proves nothing")
	}
}
