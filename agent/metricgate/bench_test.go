package metricgate

import (
	"context"
	"testing"
	"time"

	"github.com/fleetops/reconciler/internal/promlab"
	"github.com/fleetops/reconciler/spec"
)

// BenchmarkCheck is one evaluation of a gate of two series against a
// local Prometheus: the cost a node pays per interval.
func BenchmarkCheck(b *testing.B) {
	prom := promlab.Start(b, promlab.Options{})
	g := &Gate{Prometheus: prom.URL, Metrics: []spec.Metric{metric(
		`label_replace(vector(1), "code", "200", "", "") or label_replace(vector(2), "code", "500", "", "")`, nil, bound(5), time.Second, time.Second)}}
	ctx := context.Background()
	for b.Loop() {
		if err := g.Check(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
