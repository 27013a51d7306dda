package cli

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/internal/fleetlab"
)

// TestStopThenStartIsVisible: a release without listen sockets is swapped
// stop-then-start; the rollout record's node_done and status say so, before
// the next upgrade costs requests. Before, the record said nothing and
// status showed a plain success.
func TestStopThenStartIsVisible(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an agent and its workload process")
	}
	f := newFixture(t)
	f.pack("1.0.0", ownPortRelase)
	state := t.TempDir()
	t.Cleanup(func() { must(t, fleetlab.KillWorkloads(state)) })
	r := f.run("agent", "--once", "--repo", f.repo, "--node", "n1", "--state-dir", state,
		"--trust-key", f.pub, "--listen", "", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("agent --once: exit %d\n%s", r.code, r.stderr)
	}
	log, err := exec.Command("git", "--git-dir", f.repo, "log", "--format=%s", "refs/reconciler/rollouts/hello").Output()
	must(t, err)
	if !strings.Contains(string(log), "hello: node_done node n1: swapped stop-then-start (no listen sockets) (by n1)") {
		t.Errorf("rollout record:\n%s", log)
	}
	st := f.run("status", "hello", "--repo", f.repo)
	if st.code != 0 || !strings.Contains(st.stdout, "warning: stop-then-start (no listen sockets) on n1: every switch of hello refuses requests") {
		t.Errorf("status: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	js := f.run("status", "hello", "--repo", f.repo, "--output", "json")
	if !strings.Contains(js.stdout, `"swap": "stop-then-start"`) {
		t.Errorf("status --output json:\n%s", js.stdout)
	}
}
