package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// TestHeldNodeSkipped (issue 16 §6): node-2 is held in the inventory when
// 1.1.0 is pushed. The rolling upgrade leaves it out of the waves and
// completes without waiting for it or calling it unreachable; node-2 keeps
// serving 1.0.0, and status and audit say it is held. Lifting the hold
// lets it converge, under a lease, after the rollout.
func TestHeldNodeSkipped(t *testing.T) {
	f := newFleet(t, 4)
	held := f.agents[1]
	rollout := `strategy: "rolling", batchSize: 2, nodeTimeout: "4s"`
	commit := f.push(specOptions{version: "1.1.0", rollout: rollout, extra: `nodes: "node-2": hold: true`}, "web 1.1.0, node-2 held")
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit && r.Outcome == reconciler.OutcomeCompleted, "not complete"
	}, "the rollout to complete without node-2")
	r := reconciler.Latest(f.record("web"))
	if r.WaveOf("node-2") >= 0 || len(r.Done) != 3 || len(r.Skipped) != 0 || len(r.Failed) != 0 {
		t.Fatalf("waves %v, done %v, skipped %v, failed %v: want node-2 out of the plan, the 3 others done",
			r.Waves, r.Done, r.Skipped, r.Failed)
	}
	f.waitAll("1.1.0", 30*time.Second, "node-2")
	f.eventually(30*time.Second, func() (bool, string) {
		rep, err := held.Report()
		if err != nil {
			return false, err.Error()
		}
		app := rep.Apps["web"]
		got, err := held.Serving()
		return app.Version == "1.0.0" && strings.Contains(app.Error, "held in the inventory") && got == "1.0.0",
			fmt.Sprintf("reports %+v, serves %q (%v)", app, got, err)
	}, "node-2 to keep serving 1.0.0, reporting why")

	out, err := f.cli("status", "web", "--output", "json")
	var st reconciler.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status web: %v\n%s", err, out)
	}
	if len(st.Held) != 1 || st.Held[0].Node != "node-2" || !strings.Contains(st.Held[0].Reason, "held") {
		t.Fatalf("status held = %+v, want node-2", st.Held)
	}
	out, err = f.cli("status", "web")
	if err != nil || !strings.Contains(out, "node-2") || !strings.Contains(out, "held in the inventory") {
		t.Fatalf("status web (text) = %s, %v: want node-2 shown held", out, err)
	}
	out, err = f.cli("audit", "web")
	if err != nil || !strings.Contains(out, "node-2 (held in the inventory)") {
		t.Fatalf("audit web = %s, %v: want node-2 marked held", out, err)
	}

	// Lift the hold: node-2 converges after the rollout, under a lease.
	f.push(specOptions{version: "1.1.0", rollout: rollout}, "node-2 released")
	f.waitAll("1.1.0", time.Minute)
}

// TestWindowHoldsTheWave (issue 16 §3): 1.1.0 is pushed with a
// maintenance window that is closed now (every day, six hours from now):
// every node waits, saying why, and status says when the wave can start;
// no node switches. A commit that opens the window (every day, all day)
// releases the wave and the rollout completes.
func TestWindowHoldsTheWave(t *testing.T) {
	f := newFleet(t, 3)
	later := time.Now().UTC().Add(6 * time.Hour)
	closed := fmt.Sprintf(`strategy: "rolling", batchSize: 2, nodeTimeout: "4s",
		windows: [{days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start: %q, end: %q, timezone: "UTC"}]`,
		later.Format("15:04"), later.Add(time.Hour).Format("15:04"))
	commit := f.push(specOptions{version: "1.1.0", rollout: closed}, "web 1.1.0, window closed now")
	f.eventually(time.Minute, func() (bool, string) {
		for i, a := range f.agents {
			rep, err := a.Report()
			if err != nil {
				return false, err.Error()
			}
			why := "outside the maintenance windows" // wave 1: node-1, node-2
			if i == 2 {
				why = "wave 2 waits for earlier waves"
			}
			if app := rep.Apps["web"]; app.Version != "1.0.0" || !strings.Contains(app.Error, why) {
				return false, fmt.Sprintf("%s: %+v", a.Name, app)
			}
		}
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit, "no rollout started"
	}, "every node to wait for the window")
	out, err := f.cli("status", "web", "--output", "json")
	var st reconciler.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status web: %v\n%s", err, out)
	}
	if st.Gate == nil || st.Gate.At.Sub(later) > time.Minute || st.Gate.At.Sub(later) < -time.Minute {
		t.Fatalf("status gate = %+v, want the window opening at about %s", st.Gate, later)
	}
	if r := reconciler.Latest(f.record("web")); len(r.Done) != 0 || len(r.Skipped) != 0 || len(r.Failed) != 0 {
		t.Fatalf("done %v skipped %v failed %v while the window is closed", r.Done, r.Skipped, r.Failed)
	}
	for _, a := range f.agents {
		if got, err := a.Serving(); err != nil || got != "1.0.0" {
			t.Fatalf("%s serves %q (%v) while the window is closed, want 1.0.0", a.Name, got, err)
		}
	}

	f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 2, nodeTimeout: "4s",
		windows: [{days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start: "00:00", end: "24:00", timezone: "Europe/Berlin"}]`},
		"open the window")
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r.ID == commit && r.Outcome == reconciler.OutcomeCompleted && len(r.Done) == 3, "outcome " + r.Outcome
	}, "the rollout to complete once the window opened")
	f.waitAll("1.1.0", 30*time.Second)
}

// TestFailureBudget (issue 16 §2): node-3 is down when 1.1.0 is pushed with
// onUnreachable: "fail", so it is recorded failed, as a node whose switch
// failed would be. With maxFailures: 1 that failure is spent from the budget:
// the rollout goes on and completes over the three other nodes, and no
// rollback commit is written (TestKilledAgentRollsBack is the same fleet
// without a budget: rolled back).
func TestFailureBudget(t *testing.T) {
	f := newFleet(t, 4)
	victim := f.agents[2] // node-3, in wave 2
	victim.Kill()
	commit := f.push(specOptions{version: "1.1.0",
		rollout: `strategy: "rolling", batchSize: 2, nodeTimeout: "4s", onUnreachable: "fail", maxFailures: 1`}, "web 1.1.0")
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit && r.Ended(), "not ended"
	}, "the rollout to end")
	r := reconciler.Latest(f.record("web"))
	if r.Outcome != reconciler.OutcomeCompleted || len(r.Done) != 3 || !hasFailed(r, "node-3") || len(r.Failed) != 1 {
		t.Fatalf("outcome %q (%s), done %v, failed %v: want completed with node-3 failed", r.Outcome, r.Reason, r.Done, r.Failed)
	}
	tip, err := fleetlab.Git(f.bare, "rev-parse", "main")
	if err != nil || strings.TrimSpace(tip) != commit {
		t.Fatalf("tip of main %q (%v), want the upgrade commit %s: no rollback", tip, err, commit)
	}
	f.waitAll("1.1.0", 30*time.Second) // the three live nodes
	out, err := f.cli("status", "web", "--output", "json")
	var st reconciler.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status web: %v\n%s", err, out)
	}
	if st.Budget == nil || st.Budget.MaxFailures != 1 || st.Budget.Failed != 1 || st.Result == nil || st.Result.Failed != 1 {
		t.Fatalf("status budget %+v, result %+v: want 1 of 1 spent", st.Budget, st.Result)
	}
}

func hasFailed(r *reconciler.Rollout, n string) bool { _, ok := r.Failed[n]; return ok }

// TestFailureBudgetBadNode (issue 16 §2): node-2's health check of 1.1.0
// fails (its inventory points its check at a path the workload does not
// serve), so its switch is undone locally and recorded failed. With
// maxFailures: 1 the rollout goes on and completes over the other three;
// node-2 keeps serving 1.0.0.
func TestFailureBudgetBadNode(t *testing.T) {
	f := newFleet(t, 4)
	files := f.spec(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 2, nodeTimeout: "20s", maxFailures: 1`})
	fleet := strings.Replace(files["fleet.cue"], `"http://127.0.0.1:${PORT}/health"`, `"http://127.0.0.1:${PORT}${HEALTH}"`, 1)
	for _, n := range f.nodes {
		path := "/health"
		if n == "node-2" {
			path = "/no-such-check"
		}
		fleet += fmt.Sprintf("nodes: %q: vars: HEALTH: %q\n", n, path)
	}
	commit := gittest.PushFiles(t, f.url, "main", map[string]string{"fleet.cue": fleet}, "web 1.1.0, node-2's check broken")
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit && r.Ended(), "not ended"
	}, "the rollout to end")
	r := reconciler.Latest(f.record("web"))
	if r.Outcome != reconciler.OutcomeCompleted || len(r.Done) != 3 || !hasFailed(r, "node-2") || len(r.Failed) != 1 {
		t.Fatalf("outcome %q (%s), done %v, failed %v: want completed with node-2 failed", r.Outcome, r.Reason, r.Done, r.Failed)
	}
	t.Logf("node-2 failed: %s", r.Failed["node-2"])
	f.waitAll("1.1.0", 30*time.Second, "node-2")
	if got, err := f.agents[1].Serving(); err != nil || got != "1.0.0" {
		t.Fatalf("node-2 serves %q (%v), want 1.0.0 (its switch undone)", got, err)
	}
}
