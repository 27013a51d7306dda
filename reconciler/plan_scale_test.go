package reconciler

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// TestPlanWavesListOfManyNames: an app listing 100,000 node names against
// an inventory of 100,000 nodes plans in linear time (before, each node was
// looked up in the list: 10^10 comparisons, minutes).
func TestPlanWavesListOfManyNames(t *testing.T) {
	const n = 100_000
	names := make([]string, n)
	inv := make([]NodeInfo, n)
	for i := range n {
		names[i] = fmt.Sprintf("n%06d", i)
		inv[i] = NodeInfo{Name: names[i]}
	}
	app := spec.App{Name: "web", Nodes: spec.Targets{Names: names},
		Rollout: spec.Rollout{Strategy: spec.StrategyRolling, BatchSize: 1000}}
	start := time.Now()
	p := PlanWaves(app, inv)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("planned in %v, want well under 10s", d)
	}
	if len(p.Waves) != n/1000 || len(p.Unknown) != 0 {
		t.Errorf("%d waves, %d unknown", len(p.Waves), len(p.Unknown))
	}
}
