package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// recordingReporter keeps every report the agent publishes.
type recordingReporter struct {
	mu      sync.Mutex
	reports []reconciler.NodeReport
}

func (r *recordingReporter) WriteReport(_ context.Context, rep reconciler.NodeReport) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, rep)
	return nil
}

func (r *recordingReporter) published() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reports)
}

// observingDriver records the app's reported state while it switches.
type observingDriver struct {
	fakeDriver
	during func() reconciler.AppReport
	seen   []reconciler.AppReport
}

func (d *observingDriver) Switch(ctx context.Context, cur *driver.Running, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	d.seen = append(d.seen, d.during())
	return d.fakeDriver.Switch(ctx, cur, next, healthy)
}

// TestReportSwitchingDuringSwitch: the node report says "switching" (with
// the target) while the driver switches, published when the switch starts,
// not only at the end of the pass (before, --wait showed "healthy"
// throughout a switch). The release declares no listen sockets: the report
// and the swap metric say stop-then-start.
func TestReportSwitchingDuringSwitch(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	rec := &recordingReporter{}
	drv := &observingDriver{fakeDriver: fakeDriver{fail: map[string]bool{}}}
	drv.during = func() reconciler.AppReport {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.reports[len(rec.reports)-1].Apps["web"]
	}
	h.a.cfg.Reporter, h.a.cfg.Drivers = rec, map[string]driver.Driver{"process": drv}
	h.reconcile(t)
	h.push(t, "web@2.0.0")
	before := rec.published()
	r, ok := h.reconcile(t)
	if !ok || r.Apps["web"].Version != "2.0.0" {
		t.Fatalf("second pass: %v %+v", ok, r.Apps["web"])
	}
	got := drv.seen[len(drv.seen)-1]
	if got.State != reconciler.AppSwitching || got.Target != "2.0.0" || got.Version != "1.0.0" || got.Swap != reconciler.SwapStopStart {
		t.Fatalf("report during the switch: %+v, want switching 1.0.0 -> 2.0.0, swap stop-then-start", got)
	}
	if n := rec.published() - before; n < 3 { // upgrading (install), switching, the end of the pass
		t.Fatalf("%d reports published during the pass", n)
	}
	if w := r.Apps["web"]; w.State != reconciler.AppHealthy || w.Swap != reconciler.SwapStopStart {
		t.Fatalf("after the switch: %+v", w)
	}
	if got := counter(t, h, "reconciler_swaps_total", "app=web", "swap=stop-then-start"); got != 2 {
		t.Fatalf("reconciler_swaps_total{swap=stop-then-start} = %v, want 2", got)
	}
}

// TestHealthzDegraded: /healthz says "degraded", with the error, while the
// node refuses an invalid tip or an app failed; "ok" when all is well.
// Before, it answered "ok" whatever the node refused.
func TestHealthzDegraded(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	if hz := getHealthz(t, h); hz.Status != HealthOK || len(hz.Errors) != 0 {
		t.Fatalf("converged: %+v", hz)
	}
	gittest.PushFiles(t, h.repo, "main", map[string]string{"fleet.cue": "package fleet\napps: web: version: 2.0\n"}, "typo")
	h.reconcile(t)
	hz := getHealthz(t, h)
	if hz.Status != HealthDegraded || len(hz.Errors) != 1 || !strings.Contains(hz.Errors[0], "fleet.cue:2") {
		t.Fatalf("invalid tip: %+v", hz)
	}
	h.push(t, "web@1.0.0")
	h.drv.fail["3.0.0"] = true
	h.push(t, "web@3.0.0")
	h.reconcile(t)
	if hz := getHealthz(t, h); hz.Status != HealthDegraded || len(hz.Errors) != 1 || !strings.HasPrefix(hz.Errors[0], "web: failed: ") {
		t.Fatalf("failed switch: %+v", hz)
	}
}

// TestFixedErrorLeavesHealthz: a release that could not be fetched leaves
// no trace in /healthz once the node runs healthy again (before, the old
// error came back in every report built from local state).
func TestFixedErrorLeavesHealthz(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.reconcile(t)
	h.inst.fail = map[string]error{"2.0.0": errors.New("fetch https://r.example/web.tgz: connection refused")}
	h.push(t, "web@2.0.0")
	if r, _ := h.reconcile(t); !strings.Contains(r.Apps["web"].Error, "connection refused") {
		t.Fatalf("fetch error not reported: %+v", r.Apps["web"])
	}
	h.push(t, "web@1.0.0") // the operator goes back
	h.reconcile(t)
	gittest.PushFiles(t, h.repo, "main", map[string]string{"fleet.cue": "package fleet\napps: web: version: 2.0\n"}, "typo")
	h.reconcile(t) // a report from local state alone
	hz := getHealthz(t, h)
	if w := hz.Report.Apps["web"]; w.State != reconciler.AppHealthy || w.Error != "" {
		t.Fatalf("web after the fix: %+v", w)
	}
	for _, e := range hz.Errors {
		if strings.Contains(e, "connection refused") {
			t.Fatalf("fixed error still in /healthz: %v", hz.Errors)
		}
	}
}

func getHealthz(t *testing.T, h *harness) Healthz {
	t.Helper()
	rec := httptest.NewRecorder()
	h.a.healthz(rec, httptest.NewRequest("GET", "/healthz", nil))
	var hz Healthz
	if err := json.Unmarshal(rec.Body.Bytes(), &hz); err != nil {
		t.Fatal(err)
	}
	return hz
}

// counter reads a counter of the agent's registry with the given labels.
func counter(t *testing.T, h *harness, name string, labels ...string) float64 {
	t.Helper()
	families, err := h.a.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var have []string
			for _, l := range m.GetLabel() {
				have = append(have, l.GetName()+"="+l.GetValue())
			}
			if strings.Join(have, " ") == strings.Join(labels, " ") {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
