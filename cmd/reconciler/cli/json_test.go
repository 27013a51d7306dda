package cli

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// jsonCase is one command run with --output json.
type jsonCase struct {
	cmd  string   // the command path below reconciler ("leases break")
	args []string // before --output json
	code int      // the exit code expected
}

// TestEveryCommandSpeaksJSON runs every command of the tree with --output
// json, in order against one real fleet (upgrade, pause, resume, rollback,
// an agent pass...), and checks that stdout is exactly one JSON document,
// whether the command succeeds or fails. A command added to the tree
// without a row here fails the test. Before, only status, audit, history,
// versions, diff, plan, leases and upgrade --wait printed JSON.
func TestEveryCommandSpeaksJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an agent pass that starts hook processes")
	}
	f := newFixture(t, "1.0.0", "1.1.0")
	dir := filepath.Join(f.dir, "specs")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "fleet.cue"), []byte(f.spec("1.0.0", "")["fleet.cue"]), 0o644))
	bad := filepath.Join(f.dir, "bad")
	must(t, os.MkdirAll(bad, 0o755))
	must(t, os.WriteFile(filepath.Join(bad, "fleet.cue"), []byte("package fleet\napps: web: version: 1.0\n"), 0o644))
	art := filepath.Join(f.releases, "hello-1.0.0.tar.gz")
	repo := []string{"--repo", f.repo}
	with := func(args ...string) []string { return append(args, repo...) }
	cases := []jsonCase{
		{"version", nil, 0},
		{"validate", []string{dir}, 0},
		{"validate", []string{bad}, 1},
		{"export", []string{dir}, 0},
		{"export", []string{bad}, 1},
		{"plan", []string{dir, "hello"}, 0},
		{"plan", []string{bad, "web"}, 1},
		{"keygen", []string{"--output-key-prefix", filepath.Join(f.dir, "k")}, 0},
		{"keygen", []string{"--ssh", "--output-key-prefix", filepath.Join(f.dir, "node-key")}, 0},
		{"sign", []string{"--key", f.key, "--output-signature", filepath.Join(f.dir, "x.sig"), art}, 0},
		{"verify", []string{"--key", f.pub, "--signature", art + ".sig", art}, 0},
		{"verify", []string{"--key", f.pub, "--signature", filepath.Join(f.dir, "k.pub"), art}, 1},
		{"release", nil, 2},
		{"release pack", []string{filepath.Join(f.dir, "src-1.0.0"), "--app", "hello", "--version", "1.0.0", "-o", filepath.Join(f.dir, "p.tar.gz")}, 0},
		{"release inspect", []string{"--key", f.pub, art}, 0},
		{"agent", with("--once", "--node", "n1", "--state-dir", t.TempDir(), "--trust-key", f.pub, "--listen", "", "--log-format", "json"), 0},
		{"status", with(), 0},
		{"status", with("nope"), 1},
		{"audit", with("hello"), 0},
		{"leases", with(), 0},
		{"leases break", with("hello", "1"), 0},
		{"leases break", with("hello", "9"), 1},
		{"upgrade", with("hello", "1.1.0"), 0},
		{"upgrade", with("hello", "1.1.0", "--push"), 0},
		{"upgrade", with("hello", "1.1.0", "--push"), 0}, // nothing to commit
		{"upgrade", with("nope", "1.1.0"), 1},
		{"upgrade", with("hello", "not-semver", "--push"), 1}, // does not validate
		{"pause", with("hello", "--reason", "checking"), 0},
		{"resume", with("hello"), 0},
		{"promote", with("hello"), 1},                // no rollout in progress
		{"promote", with("hello", "--wave", "1"), 2}, // the first wave is never gated
		{"rollback", with("hello", "--to", "1.0.0"), 0},
		{"history", with(), 0},
		{"events", with("hello"), 0},
		{"events", with("nope"), 1},
		{"versions", with("hello"), 0},
		{"diff", with("main~1", "main"), 0},
		{"verify-commits", with("main~1..main", "--trust-signer", filepath.Join(f.dir, "node-key.pub")), 1}, // unsigned
		{"ui", with("--base-path", "no-slash"), 2},                                                          // serves until stopped: its usage errors
	}
	for _, c := range cases {
		args := append(strings.Fields(c.cmd), append(c.args, "--output", "json")...)
		r := f.run(args...)
		if r.code != c.code {
			t.Errorf("reconciler %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, c.code, r.stderr)
		}
		if err := oneJSONValue(r.stdout); err != nil {
			t.Errorf("reconciler %s: stdout is not one JSON document: %v\n%s", strings.Join(args, " "), err, r.stdout)
		}
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.cmd] = true
	}
	for _, path := range commandPaths(newRootCmd(&env{})) {
		if !covered[path] {
			t.Errorf("command %q has no --output json case here", path)
		}
	}
}

// commandPaths lists every command below root but cobra's own (help,
// completion), as "leases break".
func commandPaths(root *cobra.Command) []string {
	var out []string
	var walk func(c *cobra.Command, prefix string)
	walk = func(c *cobra.Command, prefix string) {
		for _, sub := range c.Commands() {
			if slices.Contains([]string{"help", "completion"}, sub.Name()) || strings.HasPrefix(sub.Name(), "__") {
				continue
			}
			path := strings.TrimSpace(prefix + " " + sub.Name())
			out = append(out, path)
			walk(sub, path)
		}
	}
	root.InitDefaultCompletionCmd()
	walk(root, "")
	return out
}

// oneJSONValue checks that s holds exactly one JSON value.
func oneJSONValue(s string) error {
	dec := json.NewDecoder(strings.NewReader(s))
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more after the first JSON value")
	}
	return nil
}

// TestUsageErrorsSpeakJSON: a flag or command that does not parse is a
// usage error (exit 2) that prints the error object too when the arguments
// ask for JSON. Before, stdout stayed empty: the flag parser stopped before
// it read --output.
func TestUsageErrorsSpeakJSON(t *testing.T) {
	f := &fixture{t: t, dir: t.TempDir()}
	for _, args := range [][]string{
		{"status", "--no-such-flag", "-o", "json"},
		{"nosuchcommand", "--output=json"},
		{"leases", "--bogus", "--output", "json"},
		{"upgrade", "web", "1.0.0", "--batch-size", "x", "-ojson"},
	} {
		r := f.run(args...)
		if r.code != 2 {
			t.Errorf("reconciler %s: exit %d, want 2\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
		if err := oneJSONValue(r.stdout); err != nil || !strings.Contains(r.stdout, `"exitCode": 2`) {
			t.Errorf("reconciler %s: stdout is not the error object: %v\n%q", strings.Join(args, " "), err, r.stdout)
		}
	}
	if r := f.run("status", "--no-such-flag", "--", "-o", "json"); r.stdout != "" {
		t.Errorf("-o json after --: stdout %q, want nothing", r.stdout)
	}
}
