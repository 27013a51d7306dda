package reconciler

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// Tests of issue 17's protocol bugs in the pure engine. Each failed on main.

// Bug 7: after batchSize 3 -> 1, holders of slots 1 and 2 still switch; a
// third node must not start on slot 0. Before the fix freeSlot looked only
// below the new size and handed out slot 0.
func TestLoweredBatchSizeCountsHigherSlots(t *testing.T) {
	rec := append(started([]string{"a", "b", "c"}, []string{"d"}),
		ev(EventOptionsChanged, func(e *Event) { e.Options, e.Wave = &RolloutFlags{BatchSize: 1}, -1 }))
	rec[0].Options = &RolloutFlags{BatchSize: 3}
	in := base("c", rec)
	in.App = testApp(func(a *spec.App) { a.Rollout.BatchSize = 1 })
	in.Leases = []Lease{lease(1, "a", 0), lease(2, "b", 0)}
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("c after lowering batchSize to 1 with two holders: %v %s slot %d; want wait", d.Action, d.Reason, d.Slot)
	}
	in.Leases[0] = Lease{App: "web", Slot: 1, TTL: 30 * time.Second, Token: "released"}
	in.Leases[1] = Lease{App: "web", Slot: 2, TTL: 30 * time.Second, Token: "released"}
	if d := Decide(in); d.Action != Acquire || d.Slot != 0 {
		t.Fatalf("c once both released: %v %s; want slot 0", d.Action, d.Reason)
	}
}

// Bug 7, the same for a superseded rollout's leftover slots: its holders
// still switch, so they count against the new rollout's batchSize.
func TestSupersededRolloutSlotsCount(t *testing.T) {
	in := base("c", started([]string{"a", "b", "c", "d"}))
	old := func(slot int, holder string) Lease {
		l := lease(slot, holder, 0)
		l.Rollout = "c0"
		return l
	}
	in.Leases = []Lease{old(2, "x"), old(3, "y")}
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("with two holders of the superseded rollout and batchSize 2: %v slot %d; want wait", d.Action, d.Slot)
	}
	in.Leases[1].Unchanged = time.Minute // y's lease expired: its holder's validity ended
	if d := Decide(in); d.Action != Acquire {
		t.Fatalf("with one live holder left: %v %s; want a slot", d.Action, d.Reason)
	}
}
