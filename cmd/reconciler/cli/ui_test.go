package cli

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// The ui reads the fleet with status's and history's readers: apps with
// their targets, declared nodes, each app's status, and the history with
// the key that signed each commit (none for an unsigned one).
func TestUISnapshot(t *testing.T) {
	f := newFixture(t, "1.0.0", "1.1.0")
	key := filepath.Join(f.dir, "ada")
	if r := f.run("keygen", "--ssh", "--output-key-prefix", key); r.code != 0 {
		t.Fatalf("keygen: %s", r.stderr)
	}
	if r := f.run("upgrade", "hello", "1.1.0", "--repo", f.repo, "--push", "--signing-key", key+".key"); r.code != 0 {
		t.Fatalf("upgrade: %s", r.stderr)
	}
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }, wd: f.dir}
	src := &uiSource{e: e, f: &repoFlags{repo: f.repo, branch: "main", output: "json"}, limit: 10}
	snap, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Apps) != 1 || snap.Apps[0].Name != "hello" || snap.Apps[0].Target != "1.1.0" || snap.Apps[0].Strategy != "rolling" {
		t.Errorf("apps %+v, want hello targeting 1.1.0, rolling", snap.Apps)
	}
	var nodes []string
	for _, n := range snap.Nodes {
		nodes = append(nodes, n.Name+":"+n.Labels["tier"])
		if n.Report != nil || n.Events == nil {
			t.Errorf("node %s: report %+v, events %v; want none reported, no events", n.Name, n.Report, n.Events)
		}
	}
	if got := strings.Join(nodes, " "); got != "n1:web n2:web n3:web" {
		t.Errorf("nodes %s, want the three declared", got)
	}
	if len(snap.Rollouts) != 1 || snap.Rollouts[0].App != "hello" || snap.Rollouts[0].Target != "1.1.0" {
		t.Errorf("rollouts %+v, want hello's status", snap.Rollouts)
	}
	hist := snap.History.([]uiHistoryEntry)
	if len(hist) != 2 {
		t.Fatalf("history %+v, want the upgrade and the initial fleet", hist)
	}
	if up := hist[0]; up.Kind != "upgrade" || up.To != "1.1.0" || !strings.HasPrefix(up.Signer, "ssh SHA256:") {
		t.Errorf("newest entry %+v, want the upgrade to 1.1.0 signed by an ssh key", up)
	}
	if first := hist[1]; first.Signer != "" {
		t.Errorf("the unsigned first commit shows signer %q", first.Signer)
	}
}

// A fleet repo that cannot be opened is an error naming it and the flag
// to check: the page shows it as its banner.
func TestUISnapshotBadRepo(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "no-fleet.git")
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	src := &uiSource{e: e, f: &repoFlags{repo: bad, branch: "main", output: "json"}, limit: 10}
	_, err := src.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("snapshot of %s: %v, want an error naming it", bad, err)
	}
}
