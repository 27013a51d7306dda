package reconciler

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// lostOf is a node_lost of node's lease token.
func lostOf(n, token string) Event {
	return ev(EventNodeLost, node(n), func(e *Event) { e.Lease = token })
}

// TestSlowIsNotFailed (issue 13 §2, docs/rollouts.md "Slow is not failed"):
// a holder whose lease expired without a verdict from it is recorded lost,
// not failed; its wave goes on without it, its slot is freed and it is
// retried; a lost holding's late
// node_done does not count; after MaxLeaseLosses it is skipped (failed with
// onUnreachable "fail"); nodeTimeout runs again from the loss; only a
// failure the node reports fails the version.
func TestSlowIsNotFailed(t *testing.T) {
	one := func(rec []Event) []Event { rec[0].Options = &RolloutFlags{BatchSize: 1}; return rec }
	cases := []struct {
		name  string
		in    Input
		check func(*testing.T, Decision)
	}{{
		name: "an expired holding already recorded lost is not recorded again",
		in: func() Input {
			in := base("b", append(started([]string{"a"}, []string{"b"}), lostOf("a", "ta")))
			in.Leases = []Lease{lease(0, "a", time.Hour)}
			return in
		}(),
		check: func(t *testing.T, d Decision) {
			if d.Action == Append && d.Event.Type == EventNodeLost {
				t.Fatalf("%+v; want the loss recorded once", d.Event)
			}
		},
	}, {
		name: "the lost node is retried: it takes its slot back",
		in: func() Input {
			in := base("a", append(one(started([]string{"a"}, []string{"b"})), lostOf("a", "ta"), ev(EventWaveDone, wave(0))))
			in.Leases = []Lease{lease(0, "a", time.Hour)}
			in.App.Rollout.BatchSize = 1
			return in
		}(),
		check: func(t *testing.T, d Decision) {
			if d.Action != Acquire || d.Slot != 0 {
				t.Fatalf("%v %s; want acquire slot 0 (freed by the loss)", d.Action, d.Reason)
			}
		},
	}, {
		name: "another node may take a lost holder's slot",
		in: func() Input {
			in := base("b", append(one(started([]string{"a", "b"})), lostOf("a", "ta")))
			in.Leases = []Lease{lease(0, "a", time.Hour)}
			in.App.Rollout.BatchSize = 1
			return in
		}(),
		check: func(t *testing.T, d Decision) {
			if d.Action != Acquire || d.Slot != 0 {
				t.Fatalf("%v %s; want acquire slot 0", d.Action, d.Reason)
			}
		},
	}, {
		name: "a lost node does not hold its wave up",
		in:   base("b", append(started([]string{"a"}, []string{"b"}), lostOf("a", "ta"))),
		check: func(t *testing.T, d Decision) {
			if d.Action != Append || d.Event.Type != EventWaveDone || d.Event.Wave != 0 {
				t.Fatalf("%v %+v; want wave_done of wave 1", d.Action, d.Event)
			}
		},
	}, {
		name: "a third loss skips the node as unreachable, it does not fail the version",
		in:   base("b", append(started([]string{"a"}, []string{"b"}), lostOf("a", "t1"), lostOf("a", "t2"), lostOf("a", "t3"))),
		check: func(t *testing.T, d Decision) {
			if d.Action != Append || d.Event.Type != EventNodeUnreachable || d.Event.Node != "a" {
				t.Fatalf("%v %+v; want node_unreachable of a", d.Action, d.Event)
			}
		},
	}, {
		name: "with onUnreachable fail, a third loss is a failure",
		in: func() Input {
			in := base("b", append(started([]string{"a"}, []string{"b"}), lostOf("a", "t1"), lostOf("a", "t2"), lostOf("a", "t3")))
			in.App.Rollout.OnUnreachable = spec.OnUnreachableFail
			return in
		}(),
		check: func(t *testing.T, d Decision) {
			if d.Action != Append || d.Event.Type != EventNodeFailed || d.Event.Node != "a" {
				t.Fatalf("%v %+v; want node_failed of a", d.Action, d.Event)
			}
		},
	}, {
		name: "a node lost three times takes no lease again",
		in:   base("a", append(started([]string{"a"}, []string{"b"}), lostOf("a", "t1"), lostOf("a", "t2"), lostOf("a", "t3"), ev(EventNodeUnreachable, node("a")))),
		check: func(t *testing.T, d Decision) {
			if d.Action == Acquire || d.Action == Upgrade {
				t.Fatalf("%v %s; want no lease", d.Action, d.Reason)
			}
		},
	}, {
		name: "nodeTimeout runs from the loss: a retried node is not unreachable at once",
		in: func() Input {
			rec := append(started([]string{"a"}, []string{"b"}), lostOf("a", "ta"))
			in := base("b", rec)
			in.Seen = seenEach(t0, t0.Add(50*time.Second))
			in.Now = t0.Add(70 * time.Second) // 70s after the wave opened, 20s after the loss
			return in
		}(),
		check: func(t *testing.T, d Decision) {
			if d.Action == Append && d.Event.Type == EventNodeUnreachable {
				t.Fatalf("%+v; want a left to retry until nodeTimeout after its loss", d.Event)
			}
		},
	}, {
		name: "a reported failure still fails the rollout",
		in:   base("b", append(started([]string{"a"}, []string{"b"}), lostOf("a", "ta"), ev(EventNodeFailed, node("a"), func(e *Event) { e.Reason = "health check failed" }))),
		check: func(t *testing.T, d Decision) {
			if d.Action != Append || d.Event.Type != EventFailed {
				t.Fatalf("%v %+v; want failed", d.Action, d.Event)
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, Decide(c.in)) })
	}
}

// TestLostHoldingDoesNotCount: a node_done under a lease recorded lost is
// fenced off; one under the node's next holding counts.
func TestLostHoldingDoesNotCount(t *testing.T) {
	rec := append(started([]string{"a"}), lostOf("a", "ta"),
		ev(EventNodeDone, node("a"), func(e *Event) { e.Lease = "ta" }))
	if r := Latest(rec); hasKey(r.Done, "a") {
		t.Fatalf("node_done under the lost lease counted: %+v", r.Done)
	}
	rec = append(rec, ev(EventNodeDone, node("a"), func(e *Event) { e.Lease = "ta2" }))
	if r := Latest(rec); r.Done["a"] != "ta2" {
		t.Fatalf("node_done under a new lease not counted: %+v", r.Done)
	}
}

// TestFirstInstallRetried (issue 13 §2): a node recorded failed that runs
// nothing (a failed first install) tries again under a lease once its
// agent's backoff ran out (it no longer reports failed), in a failed
// rollout with nothing to roll back to and in a completed one; a node that
// still serves a version, or is in its backoff, waits.
func TestFirstInstallRetried(t *testing.T) {
	stopped := AppReport{State: AppStopped}
	failedRec := append(started([]string{"a"}, []string{"b"}), ev(EventNodeFailed, node("a")), ev(EventFailed, node("a")))
	failedRec[0].From = ""
	completedRec := append(started([]string{"a"}), ev(EventNodeFailed, node("a")), ev(EventWaveDone, wave(0)), ev(EventCompleted))
	for _, c := range []struct {
		name string
		rec  []Event
		self AppReport
		want Action
	}{
		{"failed rollout, nothing to roll back to, backoff over", failedRec, stopped, Acquire},
		{"failed rollout, in backoff", failedRec, AppReport{State: AppFailed}, Wait},
		{"completed rollout, backoff over", completedRec, stopped, Acquire},
		{"completed rollout, still serving the old version", completedRec, AppReport{Version: "1.0.0", State: AppHealthy}, Wait},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := base("a", c.rec)
			in.Self = c.self
			if d := Decide(in); d.Action != c.want {
				t.Fatalf("%v %s; want %v", d.Action, d.Reason, c.want)
			}
		})
	}
}
