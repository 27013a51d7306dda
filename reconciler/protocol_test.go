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

// completed is a finished rollout of 1.1.0 over a and b: a upgraded, b
// failed (rollbackOnFail false).
func completed() []Event {
	rec := started([]string{"a", "b"})
	rec[0].Options = &RolloutFlags{BatchSize: 1}
	return append(rec,
		ev(EventNodeDone, node("a"), func(e *Event) { e.Lease = "ta" }),
		ev(EventNodeFailed, node("b"), func(e *Event) { e.Reason = "health check failed" }),
		ev(EventWaveDone, wave(0)),
		ev(EventCompleted))
}

// Bug 6: a late joiner (outside the plan) that died holding a lease after
// completion: once its lease expires another late joiner takes the slot.
// Before the fix freeSlot freed it only for a holder with a verdict, which
// a node outside the plan never gets.
func TestDeadLateJoinerFreesItsSlot(t *testing.T) {
	in := base("y", completed())
	in.App = testApp(func(a *spec.App) { a.Rollout.BatchSize, a.Rollout.RollbackOnFail = 1, false })
	in.Leases = []Lease{lease(0, "x", 0)}
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("y while x's lease is live: %v; want wait", d.Action)
	}
	in.Leases[0].Unchanged = 31 * time.Second
	if d := Decide(in); d.Action != Acquire || d.Slot != 0 {
		t.Fatalf("y once late joiner x's lease expired: %v %s; want slot 0", d.Action, d.Reason)
	}
}

// Bug 5: a node that failed the target takes no lease after the rollout
// completes, whether the record or only its local state says it failed.
// Before the fix it acquired, renewed and was refused by Converge at once,
// three lease commits per pass without end.
func TestFailedNodeTakesNoLeaseAfterCompletion(t *testing.T) {
	app := testApp(func(a *spec.App) { a.Rollout.BatchSize, a.Rollout.RollbackOnFail = 1, false })
	in := base("b", completed())
	in.App = app
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("b, recorded failed, after completion: %v %s; want wait", d.Action, d.Reason)
	}
	late := base("z", completed()) // a late joiner whose own switch failed
	late.App, late.Self = app, AppReport{Version: "1.0.0", State: AppFailed}
	if d := Decide(late); d.Action != Wait {
		t.Fatalf("late joiner z that failed locally: %v %s; want wait", d.Action, d.Reason)
	}
}

// Also decided (issue 17): a restarted holder whose failure an observer
// recorded does not renew its old lease, in the rollout or after it.
func TestRestartedHolderRecordedFailedDoesNotRenew(t *testing.T) {
	rec := append(started([]string{"a", "b"}, []string{"c"}),
		ev(EventNodeFailed, node("b"), func(e *Event) { e.Lease, e.Reason = "tb", "lease expired" }))
	in := base("b", rec)
	in.App = testApp(func(a *spec.App) { a.Rollout.RollbackOnFail = false })
	in.Leases = []Lease{lease(0, "b", 0)}
	if d := Decide(in); d.Action == Upgrade {
		t.Fatalf("b, recorded failed, renews its lease in the rollout: %s", d.Reason)
	}
	in.Record = completed()
	if d := Decide(in); d.Action == Upgrade {
		t.Fatalf("b, recorded failed, renews its lease after completion: %s", d.Reason)
	}
}
