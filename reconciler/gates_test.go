package reconciler

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// TestPlanShowsMetricGates: the plan carries the app's metric gates, and
// the estimate adds each wave's longest `for` (a node's outcome counts
// only once its gates pass).
func TestPlanShowsMetricGates(t *testing.T) {
	hi := 0.5
	inv := []NodeInfo{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	gate := func(d time.Duration) spec.Metric {
		return spec.Metric{Name: "errors", Query: "up", Max: &hi, For: spec.Duration{Duration: d}, Interval: spec.Duration{Duration: time.Second}}
	}
	tests := []struct {
		name    string
		metrics []spec.Metric
		window  time.Duration
		want    time.Duration
	}{
		{"no gates", nil, 0, 2*10*time.Second + 30*time.Second},
		{"one gate", []spec.Metric{gate(time.Minute)}, time.Minute, 2*(10*time.Second+time.Minute) + 30*time.Second},
		{"the longest for counts", []spec.Metric{gate(time.Minute), gate(3 * time.Minute)}, 3 * time.Minute, 2*(10*time.Second+3*time.Minute) + 30*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := spec.App{Name: "web", Version: "1.1.0", Nodes: spec.Targets{All: true},
				Rollout: spec.Rollout{Strategy: spec.StrategyRolling, BatchSize: 2, BatchDelay: spec.Duration{Duration: 30 * time.Second}},
				Health:  spec.Health{HTTP: "http://h/x", Prometheus: "http://p:9090", Metrics: tt.metrics}}
			p := PlanWaves(app, inv)
			if len(p.Metrics) != len(tt.metrics) || (len(tt.metrics) > 0) != (p.Prometheus == "http://p:9090") {
				t.Fatalf("plan = %+v, want the app's gates", p)
			}
			if w := MetricWindow(app); w != tt.window {
				t.Errorf("MetricWindow = %s, want %s", w, tt.window)
			}
			if got := Estimate(app, p, 10*time.Second); got != tt.want {
				t.Errorf("Estimate = %s, want %s", got, tt.want)
			}
		})
	}
}
