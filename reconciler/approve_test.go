package reconciler

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// The approval gates of issue 16 §4 in the pure engine, one row per rule
// of docs/rollouts.md, "Approvals".

// gatedIn is node's input in a rollout of waves {a,b} {c,d} {e} whose
// recorded options gate waves with gate, plus the events more.
func gatedIn(nodeName, gate string, more ...Event) Input {
	rec := started([]string{"a", "b"}, []string{"c", "d"}, []string{"e"})
	rec[0].Options.Approve = gate
	rec = append(rec, more...)
	in := base(nodeName, rec)
	in.App = testApp(func(a *spec.App) { a.Rollout.Approve = gate })
	return in
}

// wave0Done is wave 1 of gatedIn done.
var wave0Done = []Event{ev(EventNodeDone, node("a")), ev(EventNodeDone, node("b")), ev(EventWaveDone, wave(0))}

func approvalOf(rollout string, k int) Approval {
	return Approval{Rollout: rollout, Wave: k, Commit: "p" + rollout, By: "Ada <ada@example.com>"}
}

func approved(k int) Event {
	return ev(EventApproved, wave(k), func(e *Event) { e.Commit = "pc1" })
}

func TestDecideApprovals(t *testing.T) {
	each, canary := spec.ApproveEachWave, spec.ApproveAfterCanary
	tests := []decideCase{
		{
			name:   "the first wave is never gated",
			in:     gatedIn("a", each),
			action: Acquire,
		},
		{
			name:   "each-wave: wave 2 waits for an approval, naming the command",
			in:     gatedIn("c", each, wave0Done...),
			action: Wait,
			check:  wantReason("wave 2 waits for approval: reconciler promote web --wave 2"),
		},
		{
			name: "an approval commit at the tip is recorded by the first agent that sees it",
			in: func() Input {
				in := gatedIn("b", each, wave0Done...)
				in.Approvals = []Approval{approvalOf("c1", 1)}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				wantEvent(EventApproved)(t, d)
				if d.Event.Wave != 1 || d.Event.Commit != "pc1" || d.Event.Reason != "approved by Ada <ada@example.com>" {
					t.Fatalf("event = %+v, want wave index 1 approved by Ada in pc1", d.Event)
				}
			},
		},
		{
			name: "an approval of another rollout is no approval of this one",
			in: func() Input {
				in := gatedIn("c", each, wave0Done...)
				in.Approvals = []Approval{approvalOf("c0", 5)}
				return in
			}(),
			action: Wait,
			check:  wantReason("waits for approval"),
		},
		{
			name: "an approval already recorded is not recorded again",
			in: func() Input {
				in := gatedIn("c", each, append(wave0Done, approved(1))...)
				in.Approvals = []Approval{approvalOf("c1", 1)}
				return in
			}(),
			action: Acquire,
		},
		{
			name:   "an approved wave opens",
			in:     gatedIn("c", each, append(wave0Done, approved(1))...),
			action: Acquire,
		},
		{
			name:   "an approval before the previous wave is done lets the wave open when it is",
			in:     gatedIn("c", each, append([]Event{approved(1)}, wave0Done...)...),
			action: Acquire,
		},
		{
			name: "an early approval does not shorten the batch delay",
			in: func() Input {
				in := gatedIn("c", each, append(wave0Done, approved(1))...)
				in.App.Rollout.BatchDelay = spec.Duration{Duration: 30 * time.Second}
				in.Record[0].Options.BatchDelay = 30 * time.Second
				in.Now = t0.Add(10 * time.Second)
				return in
			}(),
			action: Wait,
			check: func(t *testing.T, d Decision) {
				if !d.Until.Equal(t0.Add(30 * time.Second)) {
					t.Fatalf("until = %s, want the batch delay's end %s", d.Until, t0.Add(30*time.Second))
				}
			},
		},
		{
			name: "a late approval adds no batch delay after it",
			in: func() Input {
				in := gatedIn("c", each, append(wave0Done, approved(1))...)
				in.App.Rollout.BatchDelay = spec.Duration{Duration: 30 * time.Second}
				in.Record[0].Options.BatchDelay = 30 * time.Second
				in.Seen = seenSet(in.Seen, map[int]time.Time{in.Seen.Len() - 1: t0.Add(time.Hour)})
				in.Now = t0.Add(time.Hour)
				return in
			}(),
			action: Acquire,
		},
		{
			name: "each-wave: approving wave 2 leaves wave 3 gated",
			in: gatedIn("e", each, append(wave0Done, approved(1), ev(EventNodeDone, node("c")),
				ev(EventNodeDone, node("d")), ev(EventWaveDone, wave(1)))...),
			action: Wait,
			check:  wantReason("wave 3 waits for approval: reconciler promote web --wave 3"),
		},
		{
			name: "approving wave 3 approves wave 2 too",
			in: func() Input {
				in := gatedIn("c", each, wave0Done...)
				in.Approvals = []Approval{approvalOf("c1", 1), approvalOf("c1", 2)}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				wantEvent(EventApproved)(t, d)
				if d.Event.Wave != 2 {
					t.Fatalf("approved wave index %d, want 2 (the newest, covering 1)", d.Event.Wave)
				}
			},
		},
		{
			name: "an approval of wave 3 opens waves 2 and 3",
			in: gatedIn("e", each, append(wave0Done, approved(2), ev(EventNodeDone, node("c")),
				ev(EventNodeDone, node("d")), ev(EventWaveDone, wave(1)))...),
			action: Acquire,
		},
		{
			name: "after-canary: only the second wave is gated",
			in: gatedIn("e", canary, append(wave0Done, approved(1), ev(EventNodeDone, node("c")),
				ev(EventNodeDone, node("d")), ev(EventWaveDone, wave(1)))...),
			action: Acquire,
		},
		{
			name:   "after-canary: the second wave waits",
			in:     gatedIn("d", canary, wave0Done...),
			action: Wait,
			check:  wantReason("wave 2 waits for approval"),
		},
		{
			name: "a gated wave whose nodes need no switch is not done before its approval",
			in: gatedIn("a", each, append(wave0Done, ev(EventNodeHeld, node("c")),
				ev(EventNodeHeld, node("d")))...),
			action: Wait,
			check:  wantReason("upgraded"),
		},
		{
			name: "a rollback in waves is never gated",
			in: func() Input {
				in := gatedIn("c", each, wave0Done...)
				in.Record[0].Rollback = true
				return in
			}(),
			action: Acquire,
		},
		{
			name: "a paused rollout stays paused whatever is approved",
			in: func() Input {
				in := gatedIn("c", each, append(wave0Done, approved(1), ev(EventPaused))...)
				in.App.Paused = true
				return in
			}(),
			action: Wait,
			check:  wantReason("rollout paused"),
		},
		{
			name: "turning the gate on mid-rollout records it in the options",
			in: func() Input {
				in := gatedIn("c", "", wave0Done...)
				in.App.Rollout.Approve = each
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				wantEvent(EventOptionsChanged)(t, d)
				if d.Event.Options.Approve != each {
					t.Fatalf("options = %+v, want approve %s", d.Event.Options, each)
				}
			},
		},
		{
			name: "turning it off releases the gate",
			in: func() Input {
				in := gatedIn("c", each, append(wave0Done, ev(EventOptionsChanged, func(e *Event) {
					e.Options, e.Wave = &RolloutFlags{BatchSize: 2}, -1
				}))...)
				in.App.Rollout.Approve = spec.ApproveNone
				return in
			}(),
			action: Acquire,
		},
		{
			name: "a canary keeps monitoring while its rollout waits for approval",
			in: func() Input {
				in := gatedIn("a", canary, wave0Done...)
				in.App.Rollout.Strategy = spec.StrategyCanary
				in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
				in.Now = t0.Add(time.Hour) // long past the monitor
				return in
			}(),
			action: Monitor,
		},
	}
	runDecideCases(t, tests)
}

// TestNextGate: the wave a promote approves next.
func TestNextGate(t *testing.T) {
	in := gatedIn("c", spec.ApproveEachWave, append(wave0Done, approved(1))...)
	r := Latest(in.Record)
	if g := r.NextGate(); g != 2 {
		t.Fatalf("next gate = %d, want 2 (wave 3)", g)
	}
	in = gatedIn("c", "", wave0Done...)
	if g := Latest(in.Record).NextGate(); g != -1 {
		t.Fatalf("next gate without approve = %d, want -1", g)
	}
}
