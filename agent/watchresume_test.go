package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/promlab"
	"github.com/fleetops/reconciler/reconciler"
)

// watchedSpec is web at version gated by query (max 0.5), watched for
// window every 250ms.
func watchedSpec(version, prom, query, window string) map[string]string {
	return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet
nodes: n1: vars: PORT: "8080"
apps: web: {version: %q, artifact: url: "https://r.example/web.tgz", health: {exec: ["bin/check"], prometheus: %q,
	metrics: [{name: "errors", query: %q, max: 0.5, for: %q, interval: "250ms"}]}}
`, version, prom, query, window)}
}

// stoppedMidWatch switches h's agent to 1.1.0 (from 1.0.0) and stops it
// during its metric watch, as an agent killed or restarted then; it
// returns a new agent on the same state directory.
func stoppedMidWatch(t *testing.T, h *harness, prom, window string) *Agent {
	gittest.PushFiles(t, h.repo, "main", gatedSpec("1.0.0", prom, ""), "1.0.0")
	if _, ok := h.reconcile(t); !ok {
		t.Fatal("1.0.0 not converged")
	}
	gittest.PushFiles(t, h.repo, "main", watchedSpec("1.1.0", prom, "vector(0.1)", window), "1.1.0")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	h.a.Reconcile(ctx)
	if st := h.a.State().App("web"); st.Active != "1.1.0" || st.Watch == nil || st.Watch.Version != "1.1.0" || st.Watch.From != "1.0.0" {
		t.Fatalf("state after a stop mid-watch: %+v (watch %+v), want 1.1.0 active with its watch recorded", st, st.Watch)
	}
	cfg := h.a.cfg
	cfg.State = nil // read from disk, as a restarted agent does
	cfg.Registry = prometheus.NewRegistry()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestMetricWatchResumedAfterRestart: an agent stopped while it watched a
// new version's metric gates left the version running; the restarted
// agent does not count it (the coordinator sees it switching) and watches
// the gates again before it does: out of bounds, it goes back to the
// version before. Before, the restarted node reported the version healthy
// at once and the rollout counted it done, the gate unwatched.
func TestMetricWatchResumedAfterRestart(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	h := newHarness(t, nil)
	a := stoppedMidWatch(t, h, prom.URL, "1h")
	st := a.State().App("web")
	if in := (Local{Active: st.Active, Watching: st.Watch != nil && st.Watch.Version == st.Active}); !in.Watching {
		t.Fatal("the restarted agent does not see the watch unfinished")
	}
	// Meanwhile the version's errors rose.
	gittest.PushFiles(t, h.repo, "main", watchedSpec("1.1.0", prom.URL, `label_replace(vector(0.9), "node", "${NODE}", "", "")`, "1h"), "errors up")
	if ok := a.Reconcile(context.Background()); ok {
		t.Fatal("converged on a version whose resumed gate failed")
	}
	w := a.last.Load().Apps["web"]
	if w.State != reconciler.AppFailed || w.Version != "1.0.0" || !strings.Contains(w.Error, "metric gate failed after the switch to 1.1.0") ||
		!strings.Contains(w.Error, "n1 went back to 1.0.0") {
		t.Fatalf("report after the resumed watch: %+v, want back on 1.0.0 with the gate's reason", w)
	}
	if got := strings.Join(h.drv.switches, ","); got != "1.0.0,1.1.0,1.0.0" {
		t.Fatalf("switches %s, want 1.0.0, 1.1.0 and back to 1.0.0", got)
	}
	if st := a.State().App("web"); st.Watch != nil || st.Failed == nil || st.Failed.Version != "1.1.0" {
		t.Fatalf("state %+v: want the watch ended and 1.1.0 failed", st)
	}
}

// TestMetricWatchResumedPasses: the resumed watch runs what was left of the
// window; in bounds the version counts and the watch is cleared.
func TestMetricWatchResumedPasses(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	h := newHarness(t, nil)
	a := stoppedMidWatch(t, h, prom.URL, "2s")
	start := time.Now()
	if ok := a.Reconcile(context.Background()); !ok {
		t.Fatalf("not converged after the resumed watch: %+v", a.last.Load().Apps["web"])
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("resumed watch took %s: the gates were not watched again", took)
	}
	if st := a.State().App("web"); st.Watch != nil || st.Active != "1.1.0" || st.Last != "watched" {
		t.Fatalf("state %+v: want 1.1.0 with the watch cleared", st)
	}
}
