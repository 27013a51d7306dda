package reconciler

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// The gates of issue 16 in the pure engine: holds and pins (§6), windows
// and freezes (§3). One row per rule of docs/rollouts.md, "Holds and pins"
// and "Maintenance windows and freezes".

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
	tests := []decideCase{
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
	runDecideCases(t, tests)
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

// Maintenance windows and freezes (§3). t0 is Friday 2026-11-27 12:00 UTC,
// 13:00 in Berlin.

func windowed(in Input, ws []spec.Window, fs ...spec.Freeze) Input {
	in.App.Rollout.Windows, in.App.Rollout.Freeze = ws, fs
	return in
}

var (
	berlinMorning = []spec.Window{{Days: []string{"mon", "fri"}, Start: "09:00", End: "12:30", Timezone: "Europe/Berlin"}}
	berlinDay     = []spec.Window{{Days: []string{"fri"}, Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}}
	freezeNow     = spec.Freeze{From: t0.Add(-time.Hour), To: t0.Add(2 * time.Hour), Reason: "black friday"}
)

func TestGateAt(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		ro     spec.Rollout
		now    time.Time
		open   bool
		since  time.Time
		next   time.Time
		reason string
	}{
		{name: "no windows: open", now: t0, open: true},
		{name: "inside a window in its timezone", ro: spec.Rollout{Windows: berlinDay}, now: t0, open: true,
			since: time.Date(2026, 11, 27, 9, 0, 0, 0, berlin)},
		{name: "after today's window: next Monday 09:00 Berlin", ro: spec.Rollout{Windows: berlinMorning}, now: t0,
			next: time.Date(2026, 11, 30, 9, 0, 0, 0, berlin), reason: "outside the maintenance windows"},
		{name: "the window's timezone, not UTC: 12:00 UTC is 13:00 in Berlin",
			ro:  spec.Rollout{Windows: []spec.Window{{Days: []string{"fri"}, Start: "12:00", End: "13:00", Timezone: "UTC"}}},
			now: t0, open: true, since: t0},
		{name: "an overnight window is open after midnight on the next day",
			ro:  spec.Rollout{Windows: []spec.Window{{Days: []string{"thu"}, Start: "22:00", End: "04:00", Timezone: "UTC"}}},
			now: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), open: true, since: time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)},
		{name: "end 24:00 is midnight",
			ro:  spec.Rollout{Windows: []spec.Window{{Days: []string{"fri"}, Start: "13:00", End: "24:00", Timezone: "UTC"}}},
			now: time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC), open: true, since: time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)},
		{name: "a freeze closes an open window, and reopens it when it ends",
			ro: spec.Rollout{Windows: berlinDay, Freeze: []spec.Freeze{freezeNow}}, now: t0,
			next: t0.Add(2 * time.Hour), reason: "frozen until 2026-11-27T14:00:00Z: black friday"},
		{name: "a freeze alone", ro: spec.Rollout{Freeze: []spec.Freeze{freezeNow}}, now: t0,
			next: t0.Add(2 * time.Hour), reason: "frozen until"},
		{name: "after a freeze, open since it ended", ro: spec.Rollout{Freeze: []spec.Freeze{freezeNow}}, now: t0.Add(3 * time.Hour),
			open: true, since: t0.Add(2 * time.Hour)},
		{name: "a freeze past every window of the horizon: the next window after it",
			ro: spec.Rollout{Windows: berlinMorning, Freeze: []spec.Freeze{{From: t0, To: t0.Add(20 * 24 * time.Hour)}}}, now: t0,
			next: time.Date(2026, 12, 18, 9, 0, 0, 0, berlin), reason: "frozen until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := GateAt(tt.ro, tt.now)
			if g.Open != tt.open || !strings.Contains(g.Reason, tt.reason) {
				t.Fatalf("gate = %+v, want open %v, reason %q", g, tt.open, tt.reason)
			}
			if tt.open && !tt.since.IsZero() && !g.Since.Equal(tt.since) {
				t.Fatalf("since = %s, want %s", g.Since, tt.since)
			}
			if !tt.open && !g.Next.Equal(tt.next) {
				t.Fatalf("next = %s, want %s", g.Next, tt.next)
			}
		})
	}
}

func TestDecideWindowsAndFreezes(t *testing.T) {
	w3 := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
	monday := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC) // 09:00 Berlin
	tests := []decideCase{
		{
			name:   "a closed window holds an open wave: wait until it opens",
			in:     windowed(base("a", started(w3...)), berlinMorning),
			action: Wait,
			check: func(t *testing.T, d Decision) {
				wantReason("outside the maintenance windows")(t, d)
				if !d.Until.Equal(monday) {
					t.Fatalf("until = %s, want %s", d.Until, monday)
				}
			},
		},
		{
			name:   "inside the window the node asks for a lease",
			in:     windowed(base("a", started(w3...)), berlinDay),
			action: Acquire,
		},
		{
			name:   "a freeze holds it, with its reason",
			in:     windowed(base("a", started(w3...)), berlinDay, freezeNow),
			action: Wait,
			check:  wantReason("black friday"),
		},
		{
			name: "a holder in flight finishes when the window closes",
			in: func() Input {
				in := windowed(base("a", started(w3...)), berlinMorning)
				in.Leases = []Lease{lease(0, "a", 0)}
				return in
			}(),
			action: Upgrade,
		},
		{
			name: "no node is unreachable while the window is closed",
			in: func() Input {
				in := windowed(base("c", started(w3...)), berlinMorning)
				in.Now = t0.Add(time.Hour) // the wave opened an hour ago, nodeTimeout 1m
				return in
			}(),
			action: Wait,
		},
		{
			name: "nodeTimeout counts from the window's opening, not the wave's",
			in: func() Input {
				in := windowed(base("a", started(w3...)), berlinMorning)
				in.Seen = seenAt(1, t0.Add(-72*time.Hour))
				in.Now = monday.Add(30 * time.Second)
				return in
			}(),
			action: Acquire, // its own lease: neither a nor b is late yet
		},
		{
			name: "past nodeTimeout inside the window, a node that took no lease is unreachable",
			in: func() Input {
				in := windowed(base("c", started(w3...)), berlinMorning)
				in.Seen = seenAt(1, t0.Add(-72*time.Hour))
				in.Now = monday.Add(2 * time.Minute)
				return in
			}(),
			action: Append,
			check:  wantEvent(EventNodeUnreachable),
		},
		{
			name:   "an at-once rollback ignores windows and freezes",
			in:     windowed(rollbackIn("a", nil), berlinMorning, freezeNow),
			action: Converge,
		},
		{
			name: "a rollback in waves ignores them too",
			in: func() Input {
				rec := started(w3...)
				rec[0].Rollback = true
				return windowed(base("a", rec), berlinMorning, freezeNow)
			}(),
			action: Acquire,
		},
		{
			name:   "after completion a skipped node converges only inside the window",
			in:     windowed(base("c", completedTwoSkipped()), berlinMorning),
			action: Wait,
			check:  wantReason("outside the maintenance windows"),
		},
	}
	runDecideCases(t, tests)
}

func TestStatusAndDiffShowTheGate(t *testing.T) {
	app := testApp(func(a *spec.App) { a.Rollout.Windows = berlinMorning })
	st := StatusOf(app, started([]string{"a"}), nil, nil, t0)
	if st.Gate == nil || !st.Gate.At.Equal(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)) || st.Gate.OpensIn != 68*time.Hour {
		t.Fatalf("gate = %+v, want opening Monday 08:00 UTC, in 68h", st.Gate)
	}
	base := testApp(func(a *spec.App) { a.Version = "1.0.0" })
	ch := Diff(&spec.Fleet{Apps: map[string]spec.App{"web": base}}, &spec.Fleet{Apps: map[string]spec.App{"web": app}},
		inventory("a"), DiffOptions{Now: t0})
	if len(ch) != 1 || !slices.ContainsFunc(ch[0].Warnings, func(w string) bool {
		return strings.Contains(w, "no wave can start now: outside the maintenance windows; opens at 2026-11-30T09:00:00+01:00 (in 68h0m0s)")
	}) {
		t.Fatalf("diff = %+v", ch)
	}
}

// The failure budget (§2): rollout.maxFailures.

func budget(in Input, b spec.Budget) Input {
	in.App.Rollout.MaxFailures = b
	return in
}

func failedEv(n, why string) Event {
	return ev(EventNodeFailed, node(n), func(e *Event) { e.Reason = why })
}

func TestDecideFailureBudget(t *testing.T) {
	w3 := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
	oneFailed := append(started(w3...), failedEv("a", "health check failed"), ev(EventNodeDone, node("b")))
	twoFailed := append(slices.Clone(oneFailed), ev(EventWaveDone, wave(0)), failedEv("c", "install failed"))
	lost := func(n string) Event { return ev(EventNodeLost, node(n), func(e *Event) { e.Lease = "t" + n }) }
	tests := []decideCase{
		{
			name:   "a starved holder (node_lost) costs nothing: its wave goes on",
			in:     base("b", append(started(w3...), lost("a"), ev(EventNodeDone, node("b")))),
			action: Append,
			check:  wantWaveDone(0),
		},
		{
			name:   "no budget (the default): the first failure fails the rollout",
			in:     base("b", oneFailed),
			action: Append,
			check:  wantFailed("a", "health check failed"),
		},
		{
			name:   "within the budget the failed node is skipped: its wave is done",
			in:     budget(base("b", oneFailed), spec.Budget{N: 1}),
			action: Append,
			check:  wantWaveDone(0),
		},
		{
			name:   "the next wave goes on",
			in:     budget(base("c", append(slices.Clone(oneFailed), ev(EventWaveDone, wave(0)))), spec.Budget{N: 1}),
			action: Acquire,
		},
		{
			name:   "one more than the budget fails it, naming the failure past it",
			in:     budget(base("d", twoFailed), spec.Budget{N: 1}),
			action: Append,
			check:  wantFailed("c", "2 nodes failed, more than maxFailures 1 allows (1): install failed"),
		},
		{
			name:   "a share of the plan: 40% of 5 nodes is 2",
			in:     budget(base("d", twoFailed), spec.Budget{N: 40, Percent: true}),
			action: Acquire,
		},
		{
			name:   "a share rounds down: 30% of 5 nodes is 1",
			in:     budget(base("d", twoFailed), spec.Budget{N: 30, Percent: true}),
			action: Append,
			check:  wantFailed("c", "more than maxFailures 30% allows (1)"),
		},
		{
			name: "a second reported failure past a budget of 1 fails it",
			in: func() Input {
				in := budget(base("b", oneFailed), spec.Budget{N: 1})
				in.Record = append(started(w3...), failedEv("a", "health check failed"),
					failedEv("b", "health check failed twice"))
				return in
			}(),
			action: Append,
			check:  wantFailed("b", "health check failed twice"),
		},
		{
			name: "an unreachable node is skipped, not counted",
			in: budget(base("b", append(slices.Clone(oneFailed), ev(EventNodeUnreachable, node("c")),
				ev(EventWaveDone, wave(0)))), spec.Budget{N: 1}),
			action: Wait, // b is done; wave 2 waits for d
		},
		{
			name: "with onUnreachable fail an unreachable node counts",
			in: func() Input {
				in := budget(base("b", append(slices.Clone(oneFailed), ev(EventWaveDone, wave(0)))), spec.Budget{N: 1})
				in.App.Rollout.OnUnreachable = spec.OnUnreachableFail
				in.Now = t0.Add(2 * time.Minute)
				return in
			}(),
			action: Append,
			check: func(t *testing.T, d Decision) {
				wantEvent(EventNodeFailed)(t, d) // c, then the budget is spent
				in := budget(base("b", append(slices.Clone(oneFailed), ev(EventWaveDone, wave(0)), *d.Event)), spec.Budget{N: 1})
				if d2 := Decide(in); d2.Event == nil || d2.Event.Type != EventFailed {
					t.Fatalf("after %s: %s %+v, want failed", d.Event.Summary(), d2.Action, d2.Event)
				}
			},
		},
		{
			name:   "without rollbackOnFail failures never fail it",
			in:     func() Input { in := base("d", twoFailed); in.App.Rollout.RollbackOnFail = false; return in }(),
			action: Acquire,
		},
	}
	runDecideCases(t, tests)
}

func wantFailed(n, why string) func(*testing.T, Decision) {
	return func(t *testing.T, d Decision) {
		wantEvent(EventFailed)(t, d)
		if d.Event.Node != n || !strings.Contains(d.Event.Reason, why) {
			t.Fatalf("event = %+v, want failed naming %s, saying %q", d.Event, n, why)
		}
	}
}

func TestBudgetCompletesWithTheFailureInTheResult(t *testing.T) {
	rec := append(started([]string{"a", "b"}), failedEv("a", "health check failed"), ev(EventNodeDone, node("b")))
	in := budget(base("b", rec), spec.Budget{N: 1})
	for range 3 {
		d := Decide(in)
		if d.Action != Append {
			t.Fatalf("%s (%s), want the wave done, then completed", d.Action, d.Reason)
		}
		in.Record = append(in.Record, *d.Event)
		in.Seen = seenAt(len(in.Record), t0)
		if d.Event.Type == EventCompleted {
			res := d.Event.Result
			if res.Total != 2 || res.Upgraded != 1 || res.Failed != 1 {
				t.Fatalf("result = %+v", res)
			}
			return
		}
	}
	t.Fatal("the rollout did not complete")
}

// decideCase is one row of a table test of Decide: the input, the action
// wanted, and more checks of the decision.
type decideCase struct {
	name   string
	in     Input
	action Action
	check  func(*testing.T, Decision)
}

func runDecideCases(t *testing.T, tests []decideCase) {
	t.Helper()
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
