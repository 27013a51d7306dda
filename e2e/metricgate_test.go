package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/internal/promlab"
	"github.com/fleetops/reconciler/reconciler"
)

// TestMetricGateRollsBackCanary (issue 16, §1): a real Prometheus scrapes
// the workloads of 3 real agents (each target labelled with its node) while
// the test sends them traffic. Version 1.3.0 answers half its requests
// with 500 and its health check passes; the app's metric gate asks
// sum(rate(http_requests_total{node="${NODE}",code=~"5.."}[5s])) with max 1.
// The canary switches, its gate sees the errors, it rolls back on its own
// node, and an agent writes the rollback commit: every node ends on 1.0.0,
// no node past the canary took 1.3.0, and the reason names the query (with
// the canary's name substituted), the value and the bound.
func TestMetricGateRollsBackCanary(t *testing.T) {
	f := newFleet(t, 3)
	var targets []promlab.Target
	for _, a := range f.agents {
		targets = append(targets, promlab.Target{Addr: fmt.Sprintf("127.0.0.1:%d", a.Port), Labels: map[string]string{"node": a.Name}})
	}
	prom := promlab.Start(t, promlab.Options{Targets: targets, ScrapeInterval: time.Second})
	traffic := startTraffic(t, f.agents, 50*time.Millisecond)
	waitPrometheus(t, prom.URL, `count(rate(http_requests_total{code="200"}[5s]) > 0)`, float64(len(f.agents)))

	health := fmt.Sprintf(`prometheus: %q
		metrics: [{name: "errors", query: "sum(rate(http_requests_total{node=\"${NODE}\",code=~\"5..\"}[5s]))", max: 1, for: "8s", interval: "1s"}]`, prom.URL)
	bad := f.push(specOptions{version: "1.3.0", health: health,
		rollout: `strategy: "canary", batchSize: 2, canary: {count: 1, monitor: "3s"}`}, "web 1.3.0")
	var rollback string
	f.eventually(time.Minute, func() (bool, string) {
		msg, err := fleetlab.Git(f.bare, "log", "-1", "--format=%H%n%B", "main")
		if err != nil || !strings.Contains(msg, "Reconciler-Rollback-Of: "+bad) {
			return false, "no rollback commit yet: " + msg
		}
		rollback = strings.SplitN(msg, "\n", 2)[0]
		return true, ""
	}, "the rollback commit on main")
	f.waitAll("1.0.0", time.Minute)

	r := reconciler.Latest(f.record("web"))
	if r.ID != bad || r.Outcome != reconciler.OutcomeRolledBack || r.Rollback != rollback {
		t.Fatalf("rollout %s: outcome %q, rollback %q, want rolled back by %s", r.ID, r.Outcome, r.Rollback, rollback)
	}
	if len(r.Done) != 0 || len(r.Failed) != 1 {
		t.Fatalf("done %v, failed %v: want only the canary, failed", r.Done, r.Failed)
	}
	canary := r.FailedBy
	query := `sum(rate(http_requests_total{node="` + canary + `",code=~"5.."}[5s]))`
	for _, want := range []string{"metric gate failed after the switch to 1.3.0: ", "metric errors out of bounds: " + query + " = ",
		"want <= 1", canary + " went back to 1.0.0"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("failure reason %q lacks %q", r.Reason, want)
		}
	}
	if strings.Contains(r.Reason, "health "+"http") {
		t.Errorf("failure reason %q is the health check's: the metric gate should have failed it", r.Reason)
	}
	msg, _ := fleetlab.Git(f.bare, "log", "-1", "--format=%B", rollback)
	if !strings.Contains(msg, "Reconciler-Node: "+canary) || !strings.Contains(msg, "metric errors out of bounds") {
		t.Errorf("rollback commit does not name the canary and the gate:\n%s", msg)
	}
	// The canary did serve 1.3.0, and its errors are what the gate saw:
	// /health stayed ok (the switch succeeded), GET / failed.
	if n := traffic.errors("1.3.0"); n == 0 {
		t.Errorf("no 500 answer from 1.3.0 reached the traffic: the gate failed without the errors")
	}
	t.Logf("canary %s failed by its metric gate: %s (1.3.0 answered %d errors to the test's traffic)", canary, r.Reason, traffic.errors("1.3.0"))
}

// traffic sends GET / to every node's workload and counts the errors
// answered by each version.
type traffic struct {
	mu   sync.Mutex
	errs map[string]int
}

func (tr *traffic) errors(v string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.errs[v]
}

// startTraffic sends a request to each agent's workload every every until
// the test ends.
func startTraffic(t *testing.T, agents []*fleetlab.Agent, every time.Duration) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	tr := &traffic{errs: map[string]int{}}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var sent atomic.Int64
	for _, a := range agents {
		url := fmt.Sprintf("http://127.0.0.1:%d/", a.Port)
		wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				sent.Add(1)
				resp, err := client.Get(url)
				if err != nil {
					continue // a node between processes; the gate is what counts
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					v, _, _ := strings.Cut(string(b), ":")
					tr.mu.Lock()
					tr.errs[v]++
					tr.mu.Unlock()
				}
			}
		})
	}
	return tr
}

// waitPrometheus waits until the scalar value of query reaches want.
func waitPrometheus(t *testing.T, url, query string, want float64) {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	q := v1.NewAPI(c)
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		val, _, _, err := q.Query(context.Background(), query, time.Time{})
		if vec, ok := val.(model.Vector); err == nil && ok && len(vec) == 1 && float64(vec[0].Value) >= want {
			return
		}
		last = fmt.Sprint(val, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Prometheus at %s: %s never reached %v; last: %s", url, query, want, last)
}
