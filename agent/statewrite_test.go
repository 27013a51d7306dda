package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/fleetops/reconciler/agent/state"
)

// breakState makes every later write of the agent's local state fail: the
// state file is replaced by a non-empty directory, which the atomic rename
// cannot replace (a read-only directory would not stop root).
func breakState(t *testing.T, h *harness) {
	t.Helper()
	path := filepath.Join(h.a.cfg.StateDir, state.FileName)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func stateWriteErrors(t *testing.T, h *harness, step string) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.a.metrics.stateWrites.WithLabelValues(step).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Issue 12 §1 bullet 4: a local state write that fails is logged, counted
// and stops the step it guards. Before the fix the download's "installed"
// write was dropped (`_ = UpdateApp`) and nothing counted or named it.
func TestStateWriteFailureStopsStep(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "1.0.0" {
		t.Fatalf("first pass: %v %+v", ok, r.Apps)
	}
	breakState(t, h)
	h.push(t, "web@2.0.0")
	r, ok := h.reconcile(t)
	if ok || len(h.drv.switches) != 1 {
		t.Fatalf("converged %v after %d switches with an unwritable state; want no switch to 2.0.0", ok, len(h.drv.switches))
	}
	if w := r.Apps["web"]; !strings.Contains(w.Error, "write local state of app web (download)") {
		t.Fatalf("report %+v: want the failed state write named", w)
	}
	if n := stateWriteErrors(t, h, "download"); n != 1 {
		t.Fatalf("reconciler_state_write_errors_total{step=download} = %v, want 1", n)
	}
}

// Recover's writes (settling a half-done step) are counted too.
func TestRecoverStateWriteFailureIsCounted(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	if err := h.a.State().UpdateApp("web", func(s *state.App) {
		s.Step = &state.Step{Op: state.StepSwitch, From: "1.0.0", To: "2.0.0"}
	}); err != nil {
		t.Fatal(err)
	}
	breakState(t, h)
	h.a.Recover(context.Background())
	if n := stateWriteErrors(t, h, "recover"); n != 1 {
		t.Fatalf("reconciler_state_write_errors_total{step=recover} = %v, want 1", n)
	}
	if st := h.a.State().App("web"); st.Step == nil {
		t.Fatal("the step was cleared in memory although it was not written")
	}
}
