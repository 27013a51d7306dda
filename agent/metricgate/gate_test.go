package metricgate

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetops/reconciler/internal/promlab"
	"github.com/fleetops/reconciler/spec"
)

func bound(f float64) *float64 { return &f }

// metric is a gate of query, asked every interval for `for`.
func metric(query string, lo, hi *float64, interval, window time.Duration) spec.Metric {
	return spec.Metric{Name: "m", Query: query, Min: lo, Max: hi,
		Interval: spec.Duration{Duration: interval}, For: spec.Duration{Duration: window}}
}

// counter counts the queries a gate sends.
type counter struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/api/v1/query") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestJudgeRealPrometheus: each query is evaluated by a real Prometheus;
// the gate judges every series it returns against the bounds.
func TestJudgeRealPrometheus(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	two := `label_replace(vector(1), "code", "200", "", "") or label_replace(vector(9), "code", "500", "", "")`
	tests := []struct {
		name    string
		query   string
		lo, hi  *float64
		kind    string   // "" passes
		reasons []string // in the failure's message
	}{
		{"below max", "vector(0.01)", nil, bound(0.05), "", nil},
		{"at max", "vector(0.05)", nil, bound(0.05), "", nil},
		{"above max", "vector(0.5)", nil, bound(0.05), OutOfBounds, []string{"metric m out of bounds: vector(0.5) = 0.5", "want <= 0.05"}},
		{"below min", "vector(2)", bound(5), nil, OutOfBounds, []string{"vector(2) = 2", "want >= 5"}},
		{"between", "vector(7)", bound(5), bound(10), "", nil},
		{"outside both", "vector(11)", bound(5), bound(10), OutOfBounds, []string{"= 11", "want >= 5 and <= 10"}},
		{"scalar", "3", nil, bound(5), "", nil},
		{"scalar out", "scalar(vector(6))", nil, bound(5), OutOfBounds, []string{"= 6, want <= 5"}},
		{"several series in bounds", two, nil, bound(10), "", nil},
		{"one series of two out", two, nil, bound(5), OutOfBounds, []string{`= 9 {code="500"}, want <= 5 (1 of 2 series out of bounds)`}},
		{"every series out", two, bound(10), nil, OutOfBounds, []string{`= 1 {code="200"}, want >= 10 (2 of 2 series out of bounds)`}},
		{"NaN", "vector(0) / vector(0)", nil, bound(1), OutOfBounds, []string{"= NaN (not a number"}},
		{"no data", "vector(1) > 5", nil, bound(1), NoData, []string{"no data: vector(1) > 5 returned no series for 1s from Prometheus " + prom.URL, "or vector(0)"}},
		{"no such metric", `http_requests_total{node="nowhere"}`, nil, bound(1), NoData, []string{"returned no series"}},
		{"PromQL error", "rate(", nil, bound(1), Refused, []string{"Prometheus " + prom.URL + " refused rate(", "bad_data"}},
		{"range vector", "up[1m]", nil, bound(1), Refused, []string{"range vector, want an instant vector"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &counter{next: http.DefaultTransport}
			g := &Gate{Prometheus: prom.URL, Metrics: []spec.Metric{metric(tt.query, tt.lo, tt.hi, time.Second, time.Second)},
				Client: &http.Client{Transport: c}}
			err := g.Check(context.Background())
			if tt.kind == "" {
				if err != nil {
					t.Fatalf("Check: %v, want in bounds", err)
				}
				return
			}
			var f *Failure
			if !errors.As(err, &f) || f.Kind != tt.kind || !errors.Is(err, ErrFailed) {
				t.Fatalf("Check: %v, want a %s failure", err, tt.kind)
			}
			for _, want := range tt.reasons {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("reason %q lacks %q", err, want)
				}
			}
			// A verdict is given at once; no data is asked again within the interval.
			if n := c.n.Load(); tt.kind == NoData && n < 2 || tt.kind != NoData && n != 1 {
				t.Errorf("%d queries for a %s failure", n, tt.kind)
			}
		})
	}
}

// exporter serves one gauge, value_under_test, on /metrics.
func exporter(t *testing.T) (prometheus.Gauge, string) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "value_under_test", Help: "The value the test sets."})
	reg.MustRegister(g)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return g, strings.TrimPrefix(srv.URL, "http://")
}

// waitValue waits until Prometheus has scraped value v of the gauge.
func waitValue(t *testing.T, prom string, v float64) {
	t.Helper()
	g := &Gate{Prometheus: prom, Metrics: []spec.Metric{metric(`value_under_test{node="n1"}`, bound(v), bound(v), time.Second, time.Second)}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := g.Check(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never scraped value_under_test = %v: %v", v, err)
		}
	}
}

// TestWatchSchedule: Watch asks each query every interval for its `for`,
// the first an interval after it starts (once at `for` when that is
// shorter), and passes when every answer was in bounds.
func TestWatchSchedule(t *testing.T) {
	prom := promlab.Start(t, promlab.Options{})
	tests := []struct {
		name     string
		metrics  []spec.Metric
		wantAsks int64
	}{
		{"three intervals", []spec.Metric{metric("vector(1)", nil, bound(2), 300*time.Millisecond, 900*time.Millisecond)}, 3},
		{"not a whole number of intervals", []spec.Metric{metric("vector(1)", nil, bound(2), 400*time.Millisecond, time.Second)}, 2},
		{"for shorter than interval", []spec.Metric{metric("vector(1)", nil, bound(2), time.Minute, 200*time.Millisecond)}, 1},
		{"two metrics, each its own schedule", []spec.Metric{
			metric("vector(1)", nil, bound(2), 200*time.Millisecond, 600*time.Millisecond),
			metric("vector(3)", bound(2), nil, 500*time.Millisecond, time.Second)}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &counter{next: http.DefaultTransport}
			g := &Gate{Prometheus: prom.URL, Metrics: tt.metrics, Client: &http.Client{Transport: c}}
			if err := g.Watch(context.Background()); err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if n := c.n.Load(); n != tt.wantAsks {
				t.Errorf("%d queries, want %d", n, tt.wantAsks)
			}
		})
	}
}

// TestWatchCatchesAChange: Prometheus scrapes a gauge (labelled node n1
// by its scrape target, as the fleet's Prometheus labels each node); the
// gate passes while it is in bounds and fails, with the value, once it
// leaves them within the `for`.
func TestWatchCatchesAChange(t *testing.T) {
	gauge, addr := exporter(t)
	gauge.Set(0.01)
	prom := promlab.Start(t, promlab.Options{Targets: []promlab.Target{{Addr: addr, Labels: map[string]string{"node": "n1"}}}})
	waitValue(t, prom.URL, 0.01)
	c := &counter{next: http.DefaultTransport}
	g := &Gate{Prometheus: prom.URL, Client: &http.Client{Transport: c},
		Metrics: []spec.Metric{metric(`value_under_test{node="n1"}`, nil, bound(0.05), 200*time.Millisecond, time.Minute)}}
	done := make(chan error, 1)
	go func() { done <- g.Watch(context.Background()) }()
	for c.n.Load() < 2 { // two answers in bounds first
		select {
		case err := <-done:
			t.Fatalf("Watch ended before the change: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	gauge.Set(0.5)
	select {
	case err := <-done:
		var f *Failure
		if !errors.As(err, &f) || f.Kind != OutOfBounds || f.Value != 0.5 ||
			!strings.Contains(err.Error(), `value_under_test{node="n1"} = 0.5`) || !strings.Contains(err.Error(), "want <= 0.05") {
			t.Fatalf("Watch: %v, want 0.5 out of bounds", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("Watch did not see the gauge leave its bounds")
	}
}

// standIn is a Prometheus API stand-in for faults: each query gets the
// next answer of answers (the last one again once they run out).
func standIn(t *testing.T, answers ...func(w http.ResponseWriter)) (string, *atomic.Int64) {
	var n atomic.Int64
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		i := min(int(n.Add(1))-1, len(answers)-1)
		mu.Unlock()
		answers[i](w)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func answer(code int, body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

const (
	okValue = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"node":"n1"},"value":[1700000000,"0.01"]}]}}`
	noData  = `{"status":"success","data":{"resultType":"vector","result":[]}}`
	busy    = `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`
)

// TestFaults: an unreachable, failing or silent Prometheus, and one whose
// series appear late, are asked again within the interval; then the gate
// fails, saying Prometheus was unreachable or returned no data.
func TestFaults(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()
	tests := []struct {
		name    string
		answers []func(http.ResponseWriter)
		url     string // instead of a stand-in
		kind    string // "" passes
		want    string
	}{
		{"connection refused", nil, closed, Unreachable, "unreachable for 1s, so up could not be measured: "},
		{"server errors", []func(http.ResponseWriter){answer(500, "oops")}, "", Unreachable, "server error: 500"},
		{"overloaded", []func(http.ResponseWriter){answer(503, busy)}, "", Unreachable, "server error: 503"},
		{"not a Prometheus", []func(http.ResponseWriter){answer(200, "<html>")}, "", Unreachable, "unreachable"},
		{"silent", []func(http.ResponseWriter){func(http.ResponseWriter) { time.Sleep(1500 * time.Millisecond) }}, "", Unreachable, "unreachable"},
		{"no data", []func(http.ResponseWriter){answer(200, noData)}, "", NoData, "returned no series for 1s"},
		{"answers after errors", []func(http.ResponseWriter){answer(500, "oops"), answer(503, busy), answer(200, okValue)}, "", "", ""},
		{"series after no data", []func(http.ResponseWriter){answer(200, noData), answer(200, okValue)}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, asked := tt.url, &atomic.Int64{}
			if url == "" {
				url, asked = standIn(t, tt.answers...)
			}
			g := &Gate{Prometheus: url, Metrics: []spec.Metric{metric("up", nil, bound(1), time.Second, time.Second)}}
			err := g.Check(context.Background())
			if tt.kind == "" {
				if err != nil {
					t.Fatalf("Check: %v, want it to pass once Prometheus answers", err)
				}
				return
			}
			var f *Failure
			if !errors.As(err, &f) || f.Kind != tt.kind || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "metric m") {
				t.Fatalf("Check: %v, want a %s failure saying %q", err, tt.kind, tt.want)
			}
			if tt.url == "" && tt.name != "silent" && asked.Load() < 2 {
				t.Errorf("asked %d times within the interval, want it asked again", asked.Load())
			}
		})
	}
}

// TestCredentialsRedacted: a Prometheus URL's credentials stay out of the
// failure reason (it goes to logs, node reports and rollback commits).
func TestCredentialsRedacted(t *testing.T) {
	url, _ := standIn(t, answer(200, noData))
	url = strings.Replace(url, "http://", "http://ops:s3cret@", 1)
	g := &Gate{Prometheus: url, Metrics: []spec.Metric{metric("up", nil, bound(1), 200*time.Millisecond, time.Second)}}
	err := g.Check(context.Background())
	if !errors.Is(err, ErrFailed) || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "no data") {
		t.Fatalf("Check: %v, want no data, the password redacted", err)
	}
}
