package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/metricgate"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/promlab"
	"github.com/fleetops/reconciler/reconciler"
)

// gatedSpec is app web at version, gated (when query is set) by query
// with max 0.5 against prom, watched for 1s every 250ms.
func gatedSpec(version, prom, query string) map[string]string {
	gate := ""
	if query != "" {
		gate = fmt.Sprintf(`, prometheus: %q, metrics: [{name: "errors", query: %q, max: 0.5, for: "1s", interval: "250ms"}]`, prom, query)
	}
	return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet
nodes: n1: vars: PORT: "8080"
apps: web: {version: %q, artifact: url: "https://r.example/web.tgz", health: {exec: ["bin/check"]%s}}
`, version, gate)}
}

// TestMetricGateAfterSwitch: after the switch the node watches the gates
// (a real Prometheus evaluates the queries); in bounds the version stays,
// out of bounds the node switches back to the version it replaced, reports
// the gate's reason and does not try the version again; on a first install
// the failed version is stopped.
func TestMetricGateAfterSwitch(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	h := newHarness(t, nil)
	gittest.PushFiles(t, h.repo, "main", gatedSpec("1.0.0", prom.URL, ""), "1.0.0")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "1.0.0" {
		t.Fatalf("1.0.0: converged %v, %+v", ok, r.Apps["web"])
	}

	gittest.PushFiles(t, h.repo, "main", gatedSpec("1.1.0", prom.URL, "vector(0.1)"), "1.1.0, in bounds")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "1.1.0" || r.Apps["web"].State != reconciler.AppHealthy {
		t.Fatalf("1.1.0 in bounds: converged %v, %+v", ok, r.Apps["web"])
	}

	gittest.PushFiles(t, h.repo, "main", gatedSpec("2.0.0", prom.URL, `label_replace(vector(0.9), "node", "${NODE}", "", "")`), "2.0.0, out of bounds")
	for pass := range 2 {
		r, ok := h.reconcile(t)
		w := r.Apps["web"]
		if ok || w.State != reconciler.AppFailed || w.Version != "1.1.0" || w.Target != "2.0.0" {
			t.Fatalf("pass %d after the gate failed: converged %v, %+v; want 1.1.0 running, 2.0.0 failed", pass, ok, w)
		}
		for _, want := range []string{"metric gate failed after the switch to 2.0.0", `metric errors out of bounds: label_replace(vector(0.9), "node", "n1", "", "") = 0.9 {node="n1"}, want <= 0.5`, "n1 went back to 1.1.0"} {
			if !strings.Contains(w.Error, want) {
				t.Errorf("reason %q lacks %q", w.Error, want)
			}
		}
	}
	if got := strings.Join(h.drv.switches, ","); got != "1.0.0,1.1.0,2.0.0,1.1.0" {
		t.Fatalf("switches %s, want 1.0.0,1.1.0,2.0.0 and back to 1.1.0 once", got)
	}
	st := h.a.State().App("web")
	if st.Active != "1.1.0" || st.Running == nil || st.Running.Version != "1.1.0" || st.Failed == nil || st.Failed.Version != "2.0.0" {
		t.Fatalf("state %+v: want 1.1.0 active and running, 2.0.0 failed", st)
	}
}

// TestMetricGateFirstInstall: a first install that fails its gate is
// stopped: nothing ran before, nothing runs.
func TestMetricGateFirstInstall(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	h := newHarness(t, nil)
	gittest.PushFiles(t, h.repo, "main", gatedSpec("1.0.0", prom.URL, "vector(2)"), "1.0.0, out of bounds")
	r, ok := h.reconcile(t)
	w := r.Apps["web"]
	if ok || w.State != reconciler.AppFailed || w.Version != "" || !strings.Contains(w.Error, "n1 stopped it (nothing ran before)") {
		t.Fatalf("first install out of bounds: converged %v, %+v", ok, w)
	}
	if got := strings.Join(h.drv.stopped, ","); got != "web 1.0.0" {
		t.Fatalf("stopped %q, want web 1.0.0", got)
	}
	if st := h.a.State().App("web"); st.Active != "" || st.Running != nil {
		t.Fatalf("state %+v: want nothing running", st)
	}
}

// monitorLease records the outcome a canary monitor permit is finished with.
type monitorLease struct{ err error }

func (*monitorLease) Token() string { return "" }
func (*monitorLease) Begin(context.Context, time.Duration) (context.Context, error) {
	return nil, ErrNotBegun
}
func (l *monitorLease) Finish(_ context.Context, _ reconciler.AppReport, err error) { l.err = err }

// TestMetricGateDuringMonitor: under a canary monitor permit the steady
// probe also asks the gates (a real Prometheus); a value out of bounds is
// the app's report (unhealthy, the gate's reason) and the error the
// monitor's lease is finished with, which the coordinator turns into a
// failed canary (agent/rollout.TestMonitorMetricGateFailsAtOnce). Without
// the monitor no query is asked.
func TestMetricGateDuringMonitor(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	lease := &monitorLease{}
	monitor := false
	coord := CoordinatorFunc(func(_ context.Context, in DecideInput) (Permit, error) {
		if !monitor {
			return Permit{Version: in.App.Version}, nil
		}
		return Permit{Version: in.App.Version, Monitor: true, Lease: lease}, nil
	})
	h := newHarness(t, coord)
	gittest.PushFiles(t, h.repo, "main", gatedSpec("1.0.0", prom.URL, "vector(0.1)"), "1.0.0, in bounds")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].State != reconciler.AppHealthy {
		t.Fatalf("1.0.0: converged %v, %+v", ok, r.Apps["web"])
	}
	// The gate's query now fails, but outside a monitor nothing asks it.
	gittest.PushFiles(t, h.repo, "main", gatedSpec("1.0.0", prom.URL, "vector(0.9)"), "same version, the query out of bounds")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].State != reconciler.AppHealthy {
		t.Fatalf("steady, no monitor: converged %v, %+v; want healthy, no gate asked", ok, r.Apps["web"])
	}
	monitor = true
	r, ok := h.reconcile(t)
	w := r.Apps["web"]
	if ok || w.State != reconciler.AppUnhealthy || w.Version != "1.0.0" ||
		!strings.Contains(w.Error, "metric gate failed during the canary monitor of 1.0.0: metric errors out of bounds: vector(0.9) = 0.9, want <= 0.5") {
		t.Fatalf("monitor: converged %v, %+v; want unhealthy with the gate's reason", ok, w)
	}
	if !errors.Is(lease.err, metricgate.ErrFailed) {
		t.Fatalf("the monitor was finished with %v, want the gate's failure", lease.err)
	}
}
