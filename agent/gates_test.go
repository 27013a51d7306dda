package agent

import (
	"strings"
	"testing"

	"github.com/fleetops/reconciler/spec"
)

// TestMetricGateVars: the queries and the server take node variables;
// ${NODE} is the node's name unless a variable NODE is set; an undefined
// variable is an error naming it.
func TestMetricGateVars(t *testing.T) {
	hi := 0.05
	app := spec.App{Name: "web", Health: spec.Health{Prometheus: "http://${PROM}:9090",
		Metrics: []spec.Metric{{Name: "errors", Query: `rate(http_requests_total{node="${NODE}",zone="${ZONE}"}[1m])`, Max: &hi}}}}
	tests := []struct {
		name        string
		vars        map[string]string
		prom, query string
		err         string
	}{
		{"NODE is the node's name", map[string]string{"PROM": "p1", "ZONE": "a"}, "http://p1:9090", `rate(http_requests_total{node="n1",zone="a"}[1m])`, ""},
		{"a NODE variable wins", map[string]string{"PROM": "p1", "ZONE": "a", "NODE": "web-1"}, "http://p1:9090", `rate(http_requests_total{node="web-1",zone="a"}[1m])`, ""},
		{"undefined in the query", map[string]string{"PROM": "p1"}, "", "", "health.metrics errors: undefined node variable ZONE"},
		{"undefined in the server", map[string]string{"ZONE": "a"}, "", "", "health.prometheus: undefined node variable PROM"},
	}
	a := &Agent{cfg: Config{Node: "n1"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := a.metricGate(Target{App: app, Version: "1.0.0", Vars: tt.vars})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("metricGate: %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || g.Prometheus != tt.prom || g.Metrics[0].Query != tt.query || *g.Metrics[0].Max != hi {
				t.Fatalf("metricGate = %+v, %v; want %s %s", g, err, tt.prom, tt.query)
			}
			if app.Health.Metrics[0].Query == tt.query {
				t.Fatal("the spec's query was changed in place")
			}
		})
	}
	if g, err := a.metricGate(Target{App: spec.App{Name: "web"}}); g != nil || err != nil {
		t.Fatalf("no metrics: %v, %v; want no gate", g, err)
	}
}
