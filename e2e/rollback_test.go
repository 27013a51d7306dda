package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// TestRollbackAppliesAtOnce (issue 10, item 1): 3 agents, batchSize 1,
// batchDelay 15s; a completed rollout to 1.1.0 (two delays: 30 s); then
// `reconciler rollback web --to 1.0.0 --push`: every node serves 1.0.0
// within 5 s of the push, without a lease, and the record says it was a
// rollback applied at once. Before, the rollback rolled like an upgrade and
// the fleet took over 30 s to get back.
func TestRollbackAppliesAtOnce(t *testing.T) {
	f := newFleet(t, 3)
	up := f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 1, batchDelay: "15s"`}, "web 1.1.0")
	f.eventually(2*time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == up && r.Outcome == reconciler.OutcomeCompleted, "rollout of 1.1.0 not complete"
	}, "the rollout of 1.1.0 to complete")
	f.waitAll("1.1.0", 30*time.Second)

	pushed := time.Now()
	out, err := f.cli("rollback", "web", "--to", "1.0.0", "--push", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	var res struct {
		Commit, From, To string
		Pushed, AtOnce   bool
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Pushed || res.From != "1.1.0" || res.To != "1.0.0" || !res.AtOnce {
		t.Fatalf("rollback --output json: %+v, %v\n%s", res, err, out)
	}
	// Every node serves 1.0.0 within 5 s of the push. A node counts from the
	// first answer its new process gives: during the hot swap the draining
	// 1.1.0 process may still answer for a moment, which is the zero-downtime
	// handover, not a node that went back.
	back := f.firstServingAll("1.0.0", pushed, 5*time.Second)
	if back < 0 {
		f.t.Fatalf("%d of %d nodes served 1.0.0 within 5s of the push", f.upgraded("1.0.0"), len(f.agents))
	}
	t.Logf("every node serves 1.0.0 %s after the rollback command started (%s after it returned)",
		back.Round(time.Millisecond), time.Since(committed).Round(time.Millisecond))

	f.eventually(30*time.Second, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == res.Commit && r.Outcome == reconciler.OutcomeCompleted, "the rollback's rollout is not complete"
	}, "the rollback's rollout to complete")
	r := reconciler.Latest(f.record("web"))
	if !r.IsRollback || !r.AtOnce || r.RollbackOf != up || r.From != "1.1.0" || r.Target != "1.0.0" || len(r.Done) != 3 {
		t.Fatalf("rollback rollout = %+v, want an at-once rollback of %s, 1.1.0 -> 1.0.0, done on 3 nodes", r, up)
	}
	if holds := f.leaseHistory("web", res.Commit); len(holds) != 0 {
		t.Fatalf("the at-once rollback took leases: %+v", holds)
	}
	out, err = f.cli("status", "web")
	if err != nil || !strings.Contains(out, "(rollback to 1.0.0 from 1.1.0 at once, commit "+res.Commit[:12]) {
		t.Fatalf("status of the rollback: %v\n%s", err, out)
	}
	out, err = f.cli("status", "web", "--output", "json")
	if err != nil || !strings.Contains(out, `"rollback": true`) || !strings.Contains(out, `"atOnce": true`) {
		t.Fatalf("status of the rollback: %v\n%s", err, out)
	}
}
