package reconciler

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The gates of issue 16 in the pure engine: holds and pins (§6). One row
// per rule of docs/rollouts.md, "Holds and pins".

// holding marks node held, or pins it for web, in an input's inventory.
func holding(in Input, name string, pin string) Input {
	inv := slices.Clone(in.Inventory)
	for i := range inv {
		if inv[i].Name != name {
			continue
		}
		if pin == "" {
			inv[i].Hold = true
		} else {
			inv[i].Pin = map[string]string{"web": pin}
		}
	}
	in.Inventory = inv
	return in
}

func TestDecideHoldsAndPins(t *testing.T) {
	w3 := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
	tests := []struct {
		name   string
		in     Input
		action Action
		check  func(*testing.T, Decision)
	}{
		{
			name:   "a held node is left out of a new plan",
			in:     holding(holding(base("a", nil), "c", ""), "d", "1.0.0"),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if !slices.EqualFunc(d.Event.Waves, [][]string{{"a", "b"}, {"e"}}, slices.Equal) {
					t.Fatalf("waves = %v, want c (held) and d (pinned to 1.0.0) left out", d.Event.Waves)
				}
			},
		},
		{
			name:   "a node pinned to the target is planned like any other",
			in:     holding(base("a", nil), "c", "1.1.0"),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if !slices.EqualFunc(d.Event.Waves, w3, slices.Equal) {
					t.Fatalf("waves = %v, want %v", d.Event.Waves, w3)
				}
			},
		},
		{
			name:   "a held node of an open wave takes no lease",
			in:     holding(base("a", started(w3...)), "a", ""),
			action: Append, // its node_held, recorded by itself or any agent
			check:  wantHeld("a", "held in the inventory"),
		},
		{
			name: "a node held mid-rollout is recorded node_held by any agent, not unreachable",
			in: func() Input {
				in := holding(base("b", started(w3...)), "a", "")
				in.Now = t0.Add(2 * time.Minute) // past nodeTimeout
				return in
			}(),
			action: Append,
			check:  wantHeld("a", "held in the inventory"),
		},
		{
			name:   "a pinned node of the plan is recorded node_held",
			in:     holding(base("b", started(w3...)), "a", "1.0.0"),
			action: Append,
			check:  wantHeld("a", "pinned to 1.0.0"),
		},
		{
			name: "a held node in flight finishes its switch",
			in: func() Input {
				in := holding(base("a", started(w3...)), "a", "")
				in.Leases = []Lease{lease(0, "a", 0)}
				return in
			}(),
			action: Upgrade,
		},
		{
			name: "a held node's wave is done without it",
			in: holding(base("b", append(started(w3...), ev(EventNodeHeld, node("a")),
				ev(EventNodeDone, node("b")))), "a", ""),
			action: Append,
			check:  wantWaveDone(0),
		},
		{
			name: "a held node waits, with why",
			in: holding(base("a", append(started(w3...), ev(EventNodeHeld, node("a")),
				ev(EventNodeDone, node("b")))), "a", ""),
			action: Append, // wave_done first: bookkeeping comes before its own wait
		},
		{
			name:   "after completion a held node stays where it is",
			in:     holding(base("c", completedHeld(w3, "c")), "c", ""),
			action: Wait,
			check:  wantReason("held in the inventory"),
		},
		{
			name:   "once the hold is lifted it converges under a lease",
			in:     base("c", completedHeld(w3, "c")),
			action: Acquire,
		},
		{
			name:   "an at-once rollback applies to a held node",
			in:     holding(rollbackIn("a", nil), "a", ""),
			action: Converge,
		},
		{
			name:   "an at-once rollback does not move a node pinned elsewhere: it is recorded held",
			in:     holding(rollbackIn("a", nil), "a", "1.1.0"),
			action: Append,
			check:  wantHeld("a", "pinned to 1.1.0"),
		},
		{
			name: "a pinned node outside an at-once rollback's plan stays",
			in: func() Input {
				in := holding(rollbackIn("f", nil), "f", "1.1.0")
				in.Inventory = append(in.Inventory, NodeInfo{Name: "f", Pin: map[string]string{"web": "1.1.0"}})
				return in
			}(),
			action: Wait,
			check:  wantReason("pinned to 1.1.0"),
		},
		{
			name: "a rollback plan keeps held nodes and leaves pinned ones out",
			in: func() Input {
				in := holding(holding(base("a", nil), "b", ""), "c", "0.9.0")
				in.Rollback = &RollbackMark{Of: "c0"}
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				if !d.Event.AtOnce || !slices.EqualFunc(d.Event.Waves, [][]string{{"a", "b", "d", "e"}}, slices.Equal) {
					t.Fatalf("event = %+v, want one at-once wave without c", d.Event)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in)
			if d.Action != tt.action {
				t.Fatalf("action = %s (%s), want %s", d.Action, d.Reason, tt.action)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

// completedHeld is a completed rollout of w in which node was held.
func completedHeld(w [][]string, held string) []Event {
	rec := started(w...)
	for _, wave := range w {
		for _, n := range wave {
			if n == held {
				rec = append(rec, ev(EventNodeHeld, node(n), func(e *Event) { e.Reason = "held in the inventory" }))
			} else {
				rec = append(rec, ev(EventNodeDone, node(n)))
			}
		}
	}
	for k := range w {
		rec = append(rec, ev(EventWaveDone, wave(k)))
	}
	return append(rec, ev(EventCompleted))
}

func wantHeld(n, why string) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		wantEvent(EventNodeHeld)(t, d)
		if d.Event.Node != n || !strings.Contains(d.Event.Reason, why) {
			t.Fatalf("event = %+v, want node_held of %s saying %q", d.Event, n, why)
		}
	}
}

func wantWaveDone(k int) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		wantEvent(EventWaveDone)(t, d)
		if d.Event.Wave != k {
			t.Fatalf("wave_done of wave index %d, want %d", d.Event.Wave, k)
		}
	}
}

func wantReason(s string) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		if !strings.Contains(d.Reason, s) {
			t.Fatalf("reason = %q, want it to say %q", d.Reason, s)
		}
	}
}

func TestResultCountsHeldAsSkipped(t *testing.T) {
	r := Latest(completedHeld([][]string{{"a", "b"}}, "b"))
	res := r.Result()
	if res.Total != 2 || res.Upgraded != 1 || res.Skipped != 1 || res.Nodes[1].Outcome != "skipped" ||
		!strings.Contains(res.Nodes[1].Reason, "held") {
		t.Fatalf("result = %+v", res)
	}
}
