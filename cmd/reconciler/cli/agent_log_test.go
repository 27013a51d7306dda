package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAgentLogLines runs an agent pass that starts a rollout, takes a
// lease, installs and switches a release, and checks every JSON line it
// logs: exactly one "node" key naming the node (the rollout coordinator's
// event lines used to carry a second, empty "node"; the drivers' and Git
// store's lines none), and durations as strings ("took": "3ms"), not
// nanoseconds. It failed before package logging.
func TestAgentLogLines(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an agent pass that starts hook processes")
	}
	f := newFixture(t, "1.0.0")
	r := f.run("agent", "--once", "--repo", f.repo, "--node", "n1", "--state-dir", t.TempDir(),
		"--trust-key", f.pub, "--listen", "", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("agent --once: exit %d\n%s", r.code, r.stderr)
	}
	lines, took := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		keys := jsonKeys(t, line)
		lines++
		if vs := keys["node"]; len(vs) != 1 || vs[0] != "n1" {
			t.Errorf("node keys %v in: %s", vs, line)
		}
		if vs := keys["took"]; len(vs) > 0 {
			took++
			if s, ok := vs[0].(string); !ok || !strings.HasSuffix(s, "s") {
				t.Errorf("took = %v, want a duration string: %s", vs[0], line)
			}
		}
	}
	if lines < 5 || took == 0 {
		t.Fatalf("%d log lines, %d with took: the pass did not switch?\n%s", lines, took, r.stderr)
	}
}

// jsonKeys decodes one JSON object token by token, so that duplicate keys
// are all seen (json.Unmarshal keeps the last one only).
func jsonKeys(t *testing.T, line string) map[string][]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("log line is not a JSON object: %s", line)
	}
	out := map[string][]any{}
	for dec.More() {
		k, err := dec.Token()
		must(t, err)
		var v any
		must(t, dec.Decode(&v))
		out[k.(string)] = append(out[k.(string)], v)
	}
	return out
}
