package reconciler

import (
	"slices"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testApp(mut ...func(*spec.App)) spec.App {
	a := spec.App{
		Name: "web", Version: "1.1.0",
		Rollout: spec.Rollout{
			Strategy: spec.StrategyRolling, BatchSize: 2,
			NodeTimeout:    spec.Duration{Duration: time.Minute},
			RollbackOnFail: true, OnUnreachable: spec.OnUnreachableSkip,
			Canary: spec.Canary{Count: 1, Monitor: spec.Duration{Duration: 5 * time.Minute}},
		},
		Nodes: spec.Targets{All: true},
	}
	for _, m := range mut {
		m(&a)
	}
	return a
}

func inventory(names ...string) []NodeInfo {
	var out []NodeInfo
	for _, n := range names {
		out = append(out, NodeInfo{Name: n})
	}
	return out
}

// started is a record with a rollout of 1.1.0 from 1.0.0 over waves.
func started(waves ...[]string) []Event {
	return []Event{{Type: EventStarted, Rollout: "c1", Target: "1.1.0", From: "1.0.0", Waves: waves,
		Options: &RolloutFlags{BatchSize: 2}}}
}

func ev(typ string, mut ...func(*Event)) Event {
	e := Event{Type: typ, Rollout: "c1"}
	for _, m := range mut {
		m(&e)
	}
	return e
}

func node(n string) func(*Event) { return func(e *Event) { e.Node = n } }
func wave(k int) func(*Event)    { return func(e *Event) { e.Wave = k } }

func lease(slot int, holder string, unchanged time.Duration) Lease {
	return Lease{App: "web", Slot: slot, Holder: holder, Rollout: "c1", TTL: 30 * time.Second,
		Token: "t" + holder, Unchanged: unchanged}
}

// seenAt marks every event as first seen at t.
func seenAt(n int, t time.Time) SeenTimes { return SeenAll(n, t) }

// seenEach says that event i was first seen at ts[i].
func seenEach(ts ...time.Time) SeenTimes {
	var s SeenTimes
	for i, t := range ts {
		s = s.Extend(i+1, t)
	}
	return s
}

// seenSet is s, with event i first seen at at[i] for each i of at.
func seenSet(s SeenTimes, at map[int]time.Time) SeenTimes {
	ts := make([]time.Time, s.Len())
	for i := range ts {
		ts[i], _ = s.At(i)
	}
	for i, t := range at {
		ts[i] = t
	}
	return seenEach(ts...)
}

func base(nodeName string, rec []Event) Input {
	return Input{
		Node: nodeName, App: testApp(), Tip: "c1", Targeted: true,
		Self:      AppReport{Version: "1.0.0", State: AppHealthy},
		Inventory: inventory("a", "b", "c", "d", "e"),
		Record:    rec, Seen: seenAt(len(rec), t0), Now: t0,
	}
}

func TestDecide(t *testing.T) {
	w3 := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
	tests := []struct {
		name   string
		in     Input
		action Action
		check  func(*testing.T, Decision)
	}{
		{
			name: "no record: the first agent writes the frozen plan",
			in: func() Input {
				in := base("c", nil)
				in.Reports = map[string]NodeReport{"a": {Apps: map[string]AppReport{"web": {Version: "1.0.0"}}}}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				e := d.Event
				if e.Type != EventStarted || e.Rollout != "c1" || e.Target != "1.1.0" || e.From != "1.0.0" {
					t.Fatalf("event = %+v", e)
				}
				if !slices.EqualFunc(e.Waves, [][]string{{"a", "b"}, {"c", "d"}, {"e"}}, slices.Equal) {
					t.Fatalf("waves = %v", e.Waves)
				}
			},
		},
		{
			name:   "wave 0 node without a lease asks for a free slot",
			in:     base("a", started(w3...)),
			action: Acquire,
			check:  wantSlot(0),
		},
		{
			name: "slot 0 held by another node: take slot 1",
			in: func() Input {
				in := base("b", started(w3...))
				in.Leases = []Lease{lease(0, "a", 0)}
				return in
			}(),
			action: Acquire,
			check:  wantSlot(1),
		},
		{
			name: "all slots held: wait",
			in: func() Input {
				in := base("b", started([]string{"a", "b", "c"}))
				in.Leases = []Lease{lease(0, "a", 0), lease(1, "c", 0)}
				return in
			}(),
			action: Wait,
		},
		{
			name: "holding a lease: upgrade under it",
			in: func() Input {
				in := base("a", started(w3...))
				in.Leases = []Lease{lease(0, "a", time.Second)}
				return in
			}(),
			action: Upgrade,
			check: func(t *testing.T, d Decision) {
				if d.Version != "1.1.0" || d.Lease.Token != "ta" {
					t.Fatalf("decision = %+v", d)
				}
			},
		},
		{
			name:   "wave 1 waits for wave 0",
			in:     base("c", started(w3...)),
			action: Wait,
		},
		{
			name:   "wave 0 all done: record wave done",
			in:     base("e", append(started(w3...), ev(EventNodeDone, node("a")), ev(EventNodeDone, node("b")))),
			action: Append,
			check:  wantEvent(EventWaveDone),
		},
		{
			name: "batchDelay runs from when this node saw the wave done",
			in: func() Input {
				in := base("c", append(started(w3...), ev(EventNodeDone, node("a")), ev(EventNodeDone, node("b")), ev(EventWaveDone, wave(0))))
				in.App.Rollout.BatchDelay.Duration = 30 * time.Second
				in.Record[0].Options = &RolloutFlags{BatchSize: 2, BatchDelay: 30 * time.Second}
				in.Now = t0.Add(10 * time.Second)
				return in
			}(),
			action: Wait,
			check: func(t *testing.T, d Decision) {
				if !d.Until.Equal(t0.Add(30 * time.Second)) {
					t.Fatalf("until = %v", d.Until)
				}
			},
		},
		{
			name: "after batchDelay the next wave acquires",
			in: func() Input {
				in := base("c", append(started(w3...), ev(EventNodeDone, node("a")), ev(EventNodeDone, node("b")), ev(EventWaveDone, wave(0))))
				in.App.Rollout.BatchDelay.Duration = 30 * time.Second
				in.Record[0].Options = &RolloutFlags{BatchSize: 2, BatchDelay: 30 * time.Second}
				in.Now = t0.Add(30 * time.Second)
				return in
			}(),
			action: Acquire,
		},
		{
			name: "canary watches its health during monitor",
			in: func() Input {
				in := base("a", append(started([]string{"a"}, []string{"b", "c"}), ev(EventNodeDone, node("a")), ev(EventWaveDone, wave(0))))
				in.App.Rollout.Strategy = spec.StrategyCanary
				in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
				in.Now = t0.Add(time.Minute)
				return in
			}(),
			action: Monitor,
			check: func(t *testing.T, d Decision) {
				if !d.Until.Equal(t0.Add(5 * time.Minute)) {
					t.Fatalf("until = %v", d.Until)
				}
			},
		},
		{
			name: "after the canary wave, the next waits for the monitor",
			in: func() Input {
				in := base("b", append(started([]string{"a"}, []string{"b", "c"}), ev(EventNodeDone, node("a")), ev(EventWaveDone, wave(0))))
				in.App.Rollout.Strategy = spec.StrategyCanary
				in.Now = t0.Add(4 * time.Minute)
				return in
			}(),
			action: Wait,
		},
		{
			name: "an expired holder is recorded lost, not failed, by its judges",
			in: func() Input {
				in := base("d", started(w3...)) // a's third judge: b, c, d follow it
				in.Leases = []Lease{lease(0, "a", 31*time.Second)}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeLost || d.Event.Node != "a" || d.Event.Lease != "ta" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "another node leaves an expired holder to its judges for a TTL",
			in: func() Input {
				in := base("e", started(w3...))
				in.Leases = []Lease{lease(0, "a", 59*time.Second)}
				return in
			}(),
			action: Wait,
		},
		{
			name: "then any node records it lost",
			in: func() Input {
				in := base("e", started(w3...))
				in.Leases = []Lease{lease(0, "a", 60*time.Second)}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeLost || d.Event.Node != "a" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "the last nodes of the plan are judged by the ones before them",
			in: func() Input {
				in := base("b", started(w3...))
				in.Leases = []Lease{lease(1, "d", 31*time.Second)}
				return in
			}(),
			action: Append, // d's judges: b, c and e, the last four but d
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeLost || d.Event.Node != "d" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name:   "a failed node fails the rollout when rollbackOnFail",
			in:     base("e", append(started(w3...), ev(EventNodeFailed, node("a"), func(e *Event) { e.Reason = "health" }))),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventFailed || d.Event.Node != "a" || d.Event.Reason != "health" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name:   "a failed rollout asks for the rollback commit to From",
			in:     base("e", append(started(w3...), ev(EventNodeFailed, node("a")), ev(EventFailed, node("a")))),
			action: Rollback,
			check: func(t *testing.T, d Decision) {
				if d.Version != "1.0.0" {
					t.Fatalf("version = %q", d.Version)
				}
			},
		},
		{
			name: "without rollbackOnFail a failed node does not stop the wave",
			in: func() Input {
				in := base("e", append(started(w3...), ev(EventNodeFailed, node("a")), ev(EventNodeDone, node("b"))))
				in.App.Rollout.RollbackOnFail = false
				return in
			}(),
			action: Append,
			check:  wantEvent(EventWaveDone),
		},
		{
			name: "after the rollback commit the previous version applies at once",
			in: func() Input {
				in := base("d", append(started(w3...), ev(EventNodeFailed, node("a")), ev(EventFailed, node("a")),
					ev(EventRolledBack, func(e *Event) { e.RollbackCommit = "c2" })))
				in.App.Version = "1.0.0"
				in.Tip = "c2"
				in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
				return in
			}(),
			action: Converge,
			check: func(t *testing.T, d Decision) {
				if d.Version != "1.0.0" {
					t.Fatalf("version = %q", d.Version)
				}
			},
		},
		{
			name: "the rolled-back target committed again after the rollback commit is a new rollout",
			in: func() Input {
				in := base("d", append(started(w3...), ev(EventNodeFailed, node("a")), ev(EventFailed, node("a")),
					ev(EventRolledBack, func(e *Event) { e.RollbackCommit = "c2" })))
				in.Tip = "c3" // 1.1.0 again, after c2 restored 1.0.0
				in.Descends = func(c string) bool { return c == "c1" || c == "c2" || c == "c3" }
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventStarted || d.Event.Rollout != "c3" || d.Event.Target != "1.1.0" {
					t.Fatalf("event = %+v, want started 1.1.0 as rollout c3", d.Event)
				}
			},
		},
		{
			name: "a tip that does not descend from the rollback commit does not restart a rolled-back rollout",
			in: func() Input {
				in := base("d", append(started(w3...), ev(EventFailed, node("a")),
					ev(EventRolledBack, func(e *Event) { e.RollbackCommit = "c2" })))
				in.Tip = "c0" // older than the rollback commit: this node's fetch lags
				in.Descends = func(c string) bool { return false }
				return in
			}(),
			action: Wait,
		},
		{
			name: "a node already on the rolled-back version has nothing to do",
			in: func() Input {
				in := base("d", append(started(w3...), ev(EventFailed, node("a")), ev(EventRolledBack)))
				in.App.Version = "1.0.0"
				return in
			}(),
			action: Wait,
		},
		{
			name: "a rollback commit after a completed rollout starts a rollback at once",
			in: func() Input {
				in := base("c", completed(w3...))
				in.App.Version, in.Tip = "1.0.0", "c2"
				in.App.Rollout.BatchDelay.Duration = 15 * time.Second
				in.Rollback = &RollbackMark{Of: "c1"}
				in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				e := d.Event
				if e.Type != EventStarted || e.Rollout != "c2" || e.Target != "1.0.0" || e.From != "1.1.0" ||
					!e.Rollback || !e.AtOnce || e.RollbackOf != "c1" {
					t.Fatalf("event = %+v", e)
				}
				if !slices.EqualFunc(e.Waves, [][]string{{"a", "b", "c", "d", "e"}}, slices.Equal) {
					t.Fatalf("waves = %v, want one wave of every node", e.Waves)
				}
			},
		},
		{
			name:   "at-once rollback: a node of the last wave converges now, without a lease",
			in:     rollbackIn("e", nil),
			action: Converge,
			check: func(t *testing.T, d Decision) {
				if d.Version != "1.0.0" || d.Rollout == nil || d.Rollout.ID != "c2" {
					t.Fatalf("decision = %+v", d)
				}
			},
		},
		{
			name: "at-once rollback: a pause does not hold it",
			in: func() Input {
				in := rollbackIn("b", []Event{ev(EventPaused, of("c2"))})
				in.App.Paused = true
				return in
			}(),
			action: Converge,
		},
		{
			name: "at-once rollback: a node back on the version records node_done",
			in: func() Input {
				in := rollbackIn("b", nil)
				in.Self = AppReport{Version: "1.0.0", State: AppHealthy}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeDone || d.Event.Node != "b" || d.Event.Rollout != "c2" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name:   "at-once rollback: one node's failure does not stop the others",
			in:     rollbackIn("b", []Event{ev(EventNodeFailed, of("c2"), node("a"))}),
			action: Converge,
		},
		{
			name: "at-once rollback: a node that failed to switch records it",
			in: func() Input {
				in := rollbackIn("b", nil)
				in.Self = AppReport{Version: "1.1.0", State: AppFailed}
				return in
			}(),
			action: Append,
			check:  wantEvent(EventNodeFailed),
		},
		{
			name: "at-once rollback: a late joiner converges at once after it completed",
			in: func() Input {
				in := rollbackIn("f", []Event{ev(EventNodeDone, of("c2"), node("a")), ev(EventWaveDone, of("c2")), ev(EventCompleted, of("c2"))})
				in.Record[len(completed(w3...))].Waves = [][]string{{"a"}}
				return in
			}(),
			action: Converge,
		},
		{
			name: "at-once rollback: a late joiner whose switch failed does not retry",
			in: func() Input {
				in := rollbackIn("f", nil)
				in.Self = AppReport{Version: "1.1.0", State: AppFailed}
				return in
			}(),
			action: Wait,
		},
		{
			name: "a failed rollback is never rolled back",
			in: func() Input {
				in := rollbackIn("c", []Event{ev(EventNodeFailed, of("c2"), node("a")), ev(EventFailed, of("c2"), node("a"))})
				in.Record[len(completed(w3...))].AtOnce = false
				return in
			}(),
			action: Wait,
		},
		{
			name: "rollback --waves keeps the careful path",
			in: func() Input {
				in := base("c", completed(w3...))
				in.App.Version, in.Tip = "1.0.0", "c2"
				in.Rollback = &RollbackMark{Of: "c1", Waves: true}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				e := d.Event
				if e.Type != EventStarted || !e.Rollback || e.AtOnce || len(e.Waves) != 3 {
					t.Fatalf("event = %+v", e)
				}
			},
		},
		{
			name: "resuming restarts the batch delay: it counts from resumed, not wave_done",
			in: func() Input {
				in := base("c", append(started(w3...), ev(EventNodeDone, node("a")), ev(EventNodeDone, node("b")),
					ev(EventWaveDone, wave(0)), ev(EventPaused), ev(EventResumed)))
				in.App.Rollout.BatchDelay.Duration = 30 * time.Second
				in.Record[0].Options = &RolloutFlags{BatchSize: 2, BatchDelay: 30 * time.Second}
				in.Seen = seenSet(in.Seen, map[int]time.Time{4: t0.Add(5 * time.Second), 5: t0.Add(20 * time.Second)})
				in.Now = t0.Add(31 * time.Second)
				return in
			}(),
			action: Wait,
			check: func(t *testing.T, d Decision) {
				if !d.Until.Equal(t0.Add(50 * time.Second)) {
					t.Fatalf("until = %v, want resumed + batchDelay", d.Until)
				}
			},
		},
		{
			name: "a resume before the wave ended: the delay counts from wave_done",
			in: func() Input {
				in := base("c", append(started(w3...), ev(EventPaused), ev(EventResumed), ev(EventNodeDone, node("a")),
					ev(EventNodeDone, node("b")), ev(EventWaveDone, wave(0))))
				in.App.Rollout.BatchDelay.Duration = 30 * time.Second
				in.Record[0].Options = &RolloutFlags{BatchSize: 2, BatchDelay: 30 * time.Second}
				in.Seen = seenSet(in.Seen, map[int]time.Time{2: t0.Add(2 * time.Second), 5: t0.Add(10 * time.Second)})
				in.Now = t0.Add(35 * time.Second)
				return in
			}(),
			action: Wait,
			check: func(t *testing.T, d Decision) {
				if !d.Until.Equal(t0.Add(40 * time.Second)) {
					t.Fatalf("until = %v, want wave_done + batchDelay", d.Until)
				}
			},
		},
		{
			name: "paused in the spec: record it",
			in: func() Input {
				in := base("c", started(w3...))
				in.App.Paused = true
				return in
			}(),
			action: Append,
			check:  wantEvent(EventPaused),
		},
		{
			name: "paused: no new node starts",
			in: func() Input {
				in := base("b", append(started(w3...), ev(EventPaused)))
				in.App.Paused = true
				return in
			}(),
			action: Wait,
		},
		{
			name: "paused: a node in flight finishes",
			in: func() Input {
				in := base("a", append(started(w3...), ev(EventPaused)))
				in.App.Paused = true
				in.Leases = []Lease{lease(0, "a", 0)}
				return in
			}(),
			action: Upgrade,
		},
		{
			name:   "resumed in the spec: record it",
			in:     base("a", append(started(w3...), ev(EventPaused))),
			action: Append,
			check:  wantEvent(EventResumed),
		},
		{
			name: "no lease within nodeTimeout: skipped as unreachable",
			in: func() Input {
				in := base("e", append(started(w3...), ev(EventNodeDone, node("a"))))
				in.Now = t0.Add(61 * time.Second)
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeUnreachable || d.Event.Node != "b" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "no lease within nodeTimeout: another node leaves it to its judges",
			in: func() Input {
				in := base("a", append(started(w3...), ev(EventNodeDone, node("a")))) // b's judges: c, d, e
				in.Now = t0.Add(61 * time.Second)
				return in
			}(),
			action: Wait,
		},
		{
			name: "no lease within twice nodeTimeout: any node skips it",
			in: func() Input {
				in := base("a", append(started(w3...), ev(EventNodeDone, node("a"))))
				in.Now = t0.Add(121 * time.Second)
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeUnreachable || d.Event.Node != "b" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "no lease within nodeTimeout with onUnreachable fail: failed",
			in: func() Input {
				in := base("e", append(started(w3...), ev(EventNodeDone, node("a"))))
				in.App.Rollout.OnUnreachable = spec.OnUnreachableFail
				in.Now = t0.Add(61 * time.Second)
				return in
			}(),
			action: Append,
			check:  wantEvent(EventNodeFailed),
		},
		{
			name: "a holder renewing past nodeTimeout is not unreachable",
			in: func() Input {
				in := base("e", append(started(w3...), ev(EventNodeDone, node("a"))))
				in.Leases = []Lease{lease(1, "b", time.Second)}
				in.Now = t0.Add(61 * time.Second)
				return in
			}(),
			action: Wait,
		},
		{
			name: "a new target supersedes the rollout in progress",
			in: func() Input {
				in := base("a", started(w3...))
				in.App.Version = "1.2.0"
				in.Tip = "c9"
				return in
			}(),
			action: Append,
			check:  wantEvent(EventSuperseded),
		},
		{
			name: "after superseding, the new rollout starts",
			in: func() Input {
				in := base("a", append(started(w3...), ev(EventSuperseded)))
				in.App.Version = "1.2.0"
				in.Tip = "c9"
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventStarted || d.Event.Rollout != "c9" || d.Event.Target != "1.2.0" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "a late joiner waits for the rollout to end",
			in: func() Input {
				in := base("f", started(w3...))
				return in
			}(),
			action: Wait,
		},
		{
			name: "a late joiner converges under a lease after completion",
			in: func() Input {
				rec := append(started([]string{"a"}), ev(EventNodeDone, node("a")), ev(EventWaveDone, wave(0)), ev(EventCompleted))
				return base("f", rec)
			}(),
			action: Acquire,
		},
		{
			name:   "every wave done: complete with the result",
			in:     base("a", append(started([]string{"a"}), ev(EventNodeDone, node("a")), ev(EventWaveDone, wave(0)))),
			action: Append,
			check: func(t *testing.T, d Decision) {
				r := d.Event.Result
				if d.Event.Type != EventCompleted || r == nil || r.Total != 1 || r.Upgraded != 1 {
					t.Fatalf("event = %+v result %+v", d.Event, r)
				}
			},
		},
		{
			name: "no targeted nodes: the empty rollout completes",
			in: func() Input {
				in := base("a", started())
				in.Targeted = false
				return in
			}(),
			action: Append,
			check:  wantEvent(EventCompleted),
		},
		{
			name: "a node already on the target is done without a lease",
			in: func() Input {
				in := base("a", started(w3...))
				in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if d.Event.Type != EventNodeDone || d.Event.Node != "a" {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "a batch size change re-plans the waves not yet open",
			in: func() Input {
				in := base("a", started(w3...))
				in.App.Rollout.BatchSize = 1
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				e := d.Event
				want := [][]string{{"c"}, {"d"}, {"e"}}
				if e.Type != EventOptionsChanged || e.Wave != 1 || !slices.EqualFunc(e.Waves, want, slices.Equal) {
					t.Fatalf("event = %+v", e)
				}
			},
		},
		{
			name: "a node not targeted only keeps the books",
			in: func() Input {
				in := base("z", started(w3...))
				in.Targeted = false
				return in
			}(),
			action: Wait,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in)
			if d.Action != tt.action {
				t.Fatalf("action = %v (%s), want %v", d.Action, d.Reason, tt.action)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

// completed is a record whose rollout of 1.1.0 (c1) completed.
func completed(waves ...[]string) []Event {
	rec := started(waves...)
	for _, w := range waves {
		for _, n := range w {
			rec = append(rec, ev(EventNodeDone, node(n)))
		}
	}
	for k := range waves {
		rec = append(rec, ev(EventWaveDone, wave(k)))
	}
	return append(rec, ev(EventCompleted))
}

// rollbackIn is node's input during the at-once rollback c2 back to 1.0.0
// after the completed rollout c1 of 1.1.0, batchDelay 15s; more follow it.
func rollbackIn(nodeName string, more []Event) Input {
	rec := append(completed([]string{"a", "b"}, []string{"c", "d"}, []string{"e"}), Event{Type: EventStarted,
		Rollout: "c2", Target: "1.0.0", From: "1.1.0", Rollback: true, AtOnce: true, RollbackOf: "c1",
		Waves: [][]string{{"a", "b", "c", "d", "e"}}, Options: &RolloutFlags{BatchSize: 2, BatchDelay: 15 * time.Second}})
	in := base(nodeName, append(rec, more...))
	in.App.Version, in.Tip = "1.0.0", "c2"
	in.App.Rollout.BatchDelay.Duration = 15 * time.Second
	in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
	return in
}

func of(rollout string) func(*Event) { return func(e *Event) { e.Rollout = rollout } }

func wantSlot(s int) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Slot != s {
			t.Fatalf("slot = %d, want %d", d.Slot, s)
		}
	}
}

func wantEvent(typ string) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		t.Helper()
		if d.Event == nil || d.Event.Type != typ {
			t.Fatalf("event = %+v, want type %s", d.Event, typ)
		}
		if d.Event.Rollout == "" || d.Event.By == "" {
			t.Fatalf("event lacks rollout or author: %+v", d.Event)
		}
	}
}

func TestFoldFencing(t *testing.T) {
	// A holder whose lease expired and was recorded failed cannot count
	// its late success.
	rec := append(started([]string{"a"}), ev(EventNodeFailed, node("a")), ev(EventNodeDone, node("a")))
	r := Latest(rec)
	if _, done := r.Done["a"]; done {
		t.Fatal("a late node_done after node_failed counted")
	}
	if _, failed := r.Failed["a"]; !failed {
		t.Fatal("failure lost")
	}
}

func TestFoldCanaryFailsAfterDone(t *testing.T) {
	rec := append(started([]string{"a"}, []string{"b"}), ev(EventNodeDone, node("a")), ev(EventNodeFailed, node("a")))
	r := Latest(rec)
	if _, failed := r.Failed["a"]; !failed || hasKey(r.Done, "a") {
		t.Fatalf("done=%v failed=%v", r.Done, r.Failed)
	}
}

func TestFailedTargets(t *testing.T) {
	rec := append(started([]string{"a"}), ev(EventNodeFailed, node("a")),
		ev(EventFailed, node("a"), func(e *Event) { e.Reason = "health check failed" }), ev(EventRolledBack))
	got := FailedTargets(rec)
	if got["1.1.0"] != "health check failed" {
		t.Fatalf("failed targets = %v", got)
	}
}

// TestDecideSimulation drives several nodes through whole rollouts with the
// engine alone, checking the invariants: never more than batchSize holders,
// no node switches without a lease, and every node ends on the target.
func TestDecideSimulation(t *testing.T) {
	for _, strategy := range []string{spec.StrategyRolling, spec.StrategyCanary, spec.StrategyAllAtOnce} {
		t.Run(strategy, func(t *testing.T) {
			sim := newSim(t, strategy, []string{"n1", "n2", "n3", "n4", "n5"}, 2)
			sim.run(200)
			r := Latest(sim.record)
			if r == nil || r.Outcome != OutcomeCompleted {
				t.Fatalf("rollout did not complete: %+v", r)
			}
			for n, v := range sim.version {
				if v != "1.1.0" {
					t.Fatalf("node %s on %s", n, v)
				}
			}
		})
	}
}

// TestSlotsSpreadOverAWave checks that the nodes of an opening wave ask for
// different slots (each its place in the wave), so that they do not all
// race for slot 0, and that a node whose slot is taken moves on to the next
// free one, wrapping around.
func TestSlotsSpreadOverAWave(t *testing.T) {
	wave := []string{"a", "b", "c", "d", "e"}
	rec := []Event{{Type: EventStarted, Rollout: "c1", Target: "1.1.0", From: "1.0.0",
		Waves: [][]string{wave}, Options: &RolloutFlags{BatchSize: 5}}}
	in := func(n string, batch int) Input {
		in := base(n, rec)
		in.App.Rollout.BatchSize = batch
		return in
	}
	asked := map[int]string{}
	for i, n := range wave {
		d := Decide(in(n, 5))
		if d.Action != Acquire {
			t.Fatalf("%s: action %v, want Acquire", n, d.Action)
		}
		if d.Slot != i {
			t.Errorf("%s (place %d in its wave): slot %d, want %d", n, i, d.Slot, i)
		}
		if other, dup := asked[d.Slot]; dup {
			t.Errorf("%s and %s both ask for slot %d", n, other, d.Slot)
		}
		asked[d.Slot] = n
	}

	e := in("e", 5) // slot 4 taken: wrap to the first free one, 1
	e.Leases = []Lease{lease(4, "a", 0), lease(0, "b", 0)}
	if d := Decide(e); d.Action != Acquire || d.Slot != 1 {
		t.Fatalf("e with slots 4 and 0 held: %v slot %d, want Acquire slot 1", d.Action, d.Slot)
	}

	rec[0].Options.BatchSize = 2 // more nodes than slots: place modulo the count
	if d := Decide(in("d", 2)); d.Action != Acquire || d.Slot != 1 {
		t.Fatalf("d (place 3) with 2 slots: %v slot %d, want Acquire slot 1", d.Action, d.Slot)
	}
}
