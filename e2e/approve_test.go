package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// TestEachWaveWaitsForPromote (issue 16 §4): with rollout.approve:
// "each-wave" and one node per wave, the rollout stops after wave 1 until
// `reconciler promote` writes an approval commit, then after wave 2 until
// the next; status shows the gate and the command; approvals are commits
// with the promote trailers, recorded as approved events.
func TestEachWaveWaitsForPromote(t *testing.T) {
	f := newFleet(t, 3)
	commit := f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 1, nodeTimeout: "4s", approve: "each-wave"`}, "web 1.1.0, each wave approved")
	gated := func(wave int, done ...string) {
		t.Helper()
		f.eventually(time.Minute, func() (bool, string) {
			r := reconciler.Latest(f.record("web"))
			if r == nil || r.ID != commit || len(r.WaveDone) != wave-1 {
				return false, fmt.Sprintf("waves done %v", r)
			}
			rep, err := f.agents[wave-1].Report()
			if err != nil {
				return false, err.Error()
			}
			want := fmt.Sprintf("wave %d waits for approval: reconciler promote web --wave %d", wave, wave)
			app := rep.Apps["web"]
			return app.Version == "1.0.0" && strings.Contains(app.Error, want), fmt.Sprintf("%s: %+v", f.agents[wave-1].Name, app)
		}, fmt.Sprintf("wave %d to wait for approval", wave))
		// Held there: well past the batch delay and nodeTimeout, nothing moves.
		time.Sleep(5 * time.Second)
		r := reconciler.Latest(f.record("web"))
		if len(r.Done) != len(done) || len(r.Skipped) != 0 || len(r.Failed) != 0 || r.Ended() {
			t.Fatalf("at the gate of wave %d: done %v skipped %v failed %v outcome %q", wave, r.Done, r.Skipped, r.Failed, r.Outcome)
		}
		for _, a := range f.agents[wave-1:] {
			if got, err := a.Serving(); err != nil || got != "1.0.0" {
				t.Fatalf("%s serves %q (%v) before wave %d is approved", a.Name, got, err, wave)
			}
		}
		out, err := f.cli("status", "web", "--output", "json")
		var st reconciler.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status web: %v\n%s", err, out)
		}
		if st.Approval == nil || st.Approval.Wave != wave || st.Approval.Command != fmt.Sprintf("reconciler promote web --wave %d", wave) {
			t.Fatalf("status approval = %+v, want wave %d", st.Approval, wave)
		}
	}
	gated(2, "node-1")
	out, err := f.cli("promote", "web", "--output", "json", "--reason", "canary looks good")
	var res struct {
		Commit, Action string
		Wave           int
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Commit == "" || res.Wave != 2 || res.Action != "promote" {
		t.Fatalf("promote web: %v\n%s", err, out)
	}
	msg, err := fleetlab.Git(f.bare, "log", "-1", "--format=%B", res.Commit)
	if err != nil || !strings.Contains(msg, "Reconciler-Promote: "+commit) || !strings.Contains(msg, "Reconciler-Wave: 2") ||
		!strings.Contains(msg, "Reconciler-App: web") {
		t.Fatalf("approval commit message (%v):\n%s", err, msg)
	}
	// Promoting again before agents record it writes nothing.
	if out, err := f.cli("promote", "web", "--output", "json"); err != nil || !strings.Contains(out, `"commit": ""`) {
		t.Fatalf("second promote: %v\n%s", err, out)
	}
	gated(3, "node-1", "node-2")
	r := reconciler.Latest(f.record("web"))
	if len(r.Approvals) != 1 || r.Approvals[0].Wave != 2 || r.Approvals[0].Commit != res.Commit {
		t.Fatalf("approvals recorded = %+v, want wave 2 in %s", r.Approvals, res.Commit)
	}
	if _, err := f.cli("promote", "web", "--wave", "3"); err != nil {
		t.Fatal(err)
	}
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r.ID == commit && r.Outcome == reconciler.OutcomeCompleted && len(r.Done) == 3, "outcome " + r.Outcome
	}, "the rollout to complete once wave 3 was approved")
	f.waitAll("1.1.0", 30*time.Second)
	if _, err := f.cli("promote", "web"); err == nil || !strings.Contains(err.Error(), "no rollout in progress") {
		t.Fatalf("promote after completion: %v, want no rollout in progress", err)
	}
}
