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

// completedOneFailed is a finished rollout of 1.1.0 over a and b: a upgraded, b
// failed (rollbackOnFail false).
func completedOneFailed() []Event {
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
	in := base("y", completedOneFailed())
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
	in := base("b", completedOneFailed())
	in.App = app
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("b, recorded failed, after completion: %v %s; want wait", d.Action, d.Reason)
	}
	late := base("z", completedOneFailed()) // a late joiner whose own switch failed
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
	in.Record = completedOneFailed()
	if d := Decide(in); d.Action == Upgrade {
		t.Fatalf("b, recorded failed, renews its lease after completion: %s", d.Reason)
	}
}

// Bug 4: an agent on a tip older than the rollout's commit must not
// supersede it. Before the fix any difference between the agent's tip and
// the record's target counted as a new target: y recorded started 1.2.0, x
// (on the older tip, 1.1.0) superseded it, y superseded back.
func TestStaleTipDoesNotSupersede(t *testing.T) {
	rec := []Event{{Type: EventStarted, Rollout: "c2", Target: "1.2.0", From: "1.0.0",
		Waves: [][]string{{"x", "y"}}, Options: &RolloutFlags{BatchSize: 2}}}
	in := base("x", rec) // x's tip c1 runs 1.1.0; c2 descends from c1
	in.Descends = func(commit string) bool { return commit == "c1" }
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("x on the older tip: %v %s; want wait", d.Action, d.Reason)
	}
	in.Tip, in.App.Version = "c3", "1.3.0" // a newer tip, descending from c2
	in.Descends = func(string) bool { return true }
	if d := Decide(in); d.Action != Append || d.Event.Type != EventSuperseded {
		t.Fatalf("x on a descendant tip: %v %s; want superseded", d.Action, d.Reason)
	}
}

// Bug 4, pause and options: a node whose tip is older than the commit that
// paused the rollout (or changed its options) does not undo it.
func TestStaleTipDoesNotFlapPauseOrOptions(t *testing.T) {
	rec := append(started([]string{"a", "b"}, []string{"c"}),
		ev(EventPaused, func(e *Event) { e.Spec = "c2" }),
		ev(EventOptionsChanged, func(e *Event) { e.Spec, e.Options, e.Wave = "c2", &RolloutFlags{BatchSize: 1}, -1 }))
	in := base("a", rec) // tip c1, the rollout's commit: not paused, batchSize 2
	in.Descends = func(commit string) bool { return commit == "c1" }
	if d := Decide(in); d.Action == Append && (d.Event.Type == EventResumed || d.Event.Type == EventOptionsChanged) {
		t.Fatalf("a on the older tip appended %s", d.Event.Type)
	}
	in.Tip = "c3" // a person resumed at c3, a descendant of c2
	in.Descends = func(string) bool { return true }
	if d := Decide(in); d.Action != Append || d.Event.Type != EventResumed || d.Event.Spec != "c3" {
		t.Fatalf("a on a descendant tip: %+v; want resumed decided at c3", d)
	}
}

// Issue 12 §1: a node blocked on a rejection shows it in status, with the
// words saying a person must act.
func TestStatusShowsBlockedNode(t *testing.T) {
	why := "blocked: push refs/reconciler/leases/web/0: push rejected by the server, a person must act"
	reports := map[string]NodeReport{
		"a": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppBlocked, Error: why}}},
	}
	st := StatusOf(testApp(), started([]string{"a"}), reports, nil, t0)
	if n := st.Waves[0][0]; n.State != AppBlocked || n.Reason != why {
		t.Fatalf("status of a blocked node: %+v", n)
	}
}

// completedTwoSkipped is a finished rollout of 1.1.0 over a, b and c: a
// upgraded, b and c recorded unreachable (onUnreachable skip).
func completedTwoSkipped() []Event {
	rec := started([]string{"a"}, []string{"b", "c"})
	rec[0].Options = &RolloutFlags{BatchSize: 1}
	return append(rec,
		ev(EventNodeDone, node("a"), func(e *Event) { e.Lease = "ta" }),
		ev(EventWaveDone, wave(0)),
		ev(EventNodeUnreachable, node("b"), func(e *Event) { e.Reason = "took no lease within nodeTimeout" }),
		ev(EventNodeUnreachable, node("c"), func(e *Event) { e.Reason = "took no lease within nodeTimeout" }),
		ev(EventWaveDone, wave(1)),
		ev(EventCompleted))
}

// Liveness defect 2 (fleetsim unreachable seeds 90, 175): after completion
// a node recorded unreachable converges like a late joiner, under a lease,
// even when another skipped node died holding the slot: its expired lease
// frees the slot. Before the fix the skipped holder "awaited a verdict"
// that no one records once the rollout is over, so its slot stayed taken
// and c stayed on 1.0.0 for good.
func TestSkippedNodeConvergesAfterCompletion(t *testing.T) {
	app := testApp(func(a *spec.App) { a.Rollout.BatchSize, a.Rollout.RollbackOnFail = 1, false })
	in := base("c", completedTwoSkipped())
	in.App = app
	if d := Decide(in); d.Action != Acquire || d.Slot != 0 {
		t.Fatalf("skipped c, live again after completion: %v %s; want to acquire slot 0", d.Action, d.Reason)
	}
	in.Leases = []Lease{lease(0, "b", 0)}
	if d := Decide(in); d.Action != Wait {
		t.Fatalf("c while skipped b's lease is live: %v %s; want wait", d.Action, d.Reason)
	}
	in.Leases[0].Unchanged = 31 * time.Second
	if d := Decide(in); d.Action != Acquire || d.Slot != 0 {
		t.Fatalf("c once skipped b's lease expired: %v %s; want slot 0", d.Action, d.Reason)
	}
	// b itself, back again, takes its slot anew rather than wait on its
	// own dead lease.
	bin := base("b", completedTwoSkipped())
	bin.App, bin.Leases = app, in.Leases
	if d := Decide(bin); d.Action != Acquire || d.Slot != 0 {
		t.Fatalf("b after its own lease expired: %v %s; want slot 0", d.Action, d.Reason)
	}
	// A skipped node whose own switch failed (its local state says so) does
	// not retry the target.
	bin.Self = AppReport{Version: "1.0.0", State: AppFailed}
	if d := Decide(bin); d.Action != Wait {
		t.Fatalf("b after failing the target itself: %v %s; want wait", d.Action, d.Reason)
	}
}
