package e2e

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// TestRollingUpgrade: 5 nodes, batch size 2, over git http-backend. Three
// waves; the lease refs' history shows never more than 2 holders at once;
// every node_done names a lease commit its node held; all end on 1.1.0.
func TestRollingUpgrade(t *testing.T) {
	f := newFleet(t, 5)
	pushed := time.Now()
	commit := f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 2`}, "web 1.1.0")
	f.waitAll("1.1.0", 2*time.Minute)
	t.Logf("rollout of 5 nodes in 3 waves took %s from push", time.Since(pushed).Round(time.Millisecond))

	events := f.record("web")
	r := reconciler.Latest(events)
	if r == nil || r.ID != commit || r.Target != "1.1.0" || r.From != "1.0.0" {
		t.Fatalf("latest rollout = %+v, want 1.0.0 -> 1.1.0 started by %s", r, commit)
	}
	f.eventually(30*time.Second, func() (bool, string) {
		r = reconciler.Latest(f.record("web"))
		return r.Outcome == reconciler.OutcomeCompleted, "outcome " + r.Outcome
	}, "the rollout to complete")
	if len(r.Waves) != 3 || len(r.WaveDone) != 3 {
		t.Fatalf("waves %v, done %v: want 3 waves of 2, 2, 1", r.Waves, r.WaveDone)
	}
	holds := f.leaseHistory("web", commit)
	if n := maxConcurrent(holds); n > 2 {
		t.Fatalf("%d lease holders at once, batch size 2: %+v", n, holds)
	}
	for node, token := range r.Done {
		if token != "" && !heldBy(holds, node, token) {
			t.Errorf("%s recorded done under lease %s, which it never held", node, token)
		}
	}
	if len(r.Done) != 5 {
		t.Fatalf("done = %v, want all 5 nodes", r.Done)
	}
}
