package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/spec"
)

// journal runs fn and returns how many times the state file was written,
// and the step the app's state names last.
func journal(t *testing.T, h *harness, fn func()) (writes int, last state.JournalStep) {
	t.Helper()
	before := h.a.State().Writes()
	fn()
	return h.a.State().Writes() - before, h.a.State().App("web").Last
}

// Issue 12 §1, the per-step journal: converging to a target is a few
// named steps, each one write of the local state, whatever the path; a
// pass that changes nothing writes nothing, and a failure that repeats
// pass after pass is journaled once.
func TestJournalOneWritePerStep(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	// First install: download, switch, switched.
	if n, last := journal(t, h, func() { h.reconcile(t) }); n != 3 || last != state.JournalSwitched {
		t.Fatalf("first install: %d writes, last step %q; want 3 (download, switch, switched)", n, last)
	}
	if n, _ := journal(t, h, func() { h.reconcile(t) }); n != 0 {
		t.Fatalf("a steady pass wrote the state %d times", n)
	}
	// A failing switch: download, switch, switch_failed; not retried.
	h.push(t, "web@2.0.0")
	h.drv.fail["2.0.0"] = true
	if n, last := journal(t, h, func() { h.reconcile(t) }); n != 3 || last != state.JournalSwitchFailed {
		t.Fatalf("failed switch: %d writes, last step %q; want 3 (download, switch, switch_failed)", n, last)
	}
	if n, _ := journal(t, h, func() { h.reconcile(t) }); n != 0 {
		t.Fatalf("a pass on the remembered failed version wrote the state %d times", n)
	}
	// A failing install: one step, however many passes see it.
	h.push(t, "web@3.0.0")
	h.inst.fail = map[string]error{"3.0.0": errors.New("fetch: connection refused")}
	if n, last := journal(t, h, func() { h.reconcile(t) }); n != 1 || last != state.JournalInstallFailed {
		t.Fatalf("failed install: %d writes, last step %q; want 1", n, last)
	}
	if n, _ := journal(t, h, func() { h.reconcile(t); h.reconcile(t) }); n != 0 {
		t.Fatalf("the same install failure, two passes later, wrote the state %d times", n)
	}
	// An interrupted switch: switch, switch_interrupted (installed already).
	h.inst.fail = nil
	h.push(t, "web@4.0.0")
	h.reconcile(t) // 4.0.0 installs and runs
	st := h.a.State().App("web")
	if st.Active != "4.0.0" || st.Last != state.JournalSwitched {
		t.Fatalf("after 4.0.0: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.drv.fail["1.0.0"] = true
	app := spec.App{Name: "web", Version: "1.0.0", Artifact: spec.Artifact{URL: "https://r.example/web.tgz"}}
	n, last := journal(t, h, func() {
		if _, err := h.a.Converge(ctx, Target{App: app, Version: "1.0.0", Vars: map[string]string{"PORT": "1"}}); err == nil {
			t.Error("an interrupted switch succeeded")
		}
	})
	if n != 2 || last != state.JournalSwitchInterrupted {
		t.Fatalf("interrupted switch to an installed version: %d writes, last step %q; want 2 (switch, switch_interrupted)", n, last)
	}
}
