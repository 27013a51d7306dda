package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/metricgate"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// TestMonitorMetricGateFailsAtOnce: during a canary's monitor the permit
// asks the agent for its metric gates (Monitor), and a failed gate fails
// the canary at its first failure, whatever health.retries allows; a
// failed health probe still needs more than retries in a row.
func TestMonitorMetricGateFailsAtOnce(t *testing.T) {
	for _, tt := range []struct {
		name     string
		err      error
		failedAt int // the probe that fails the canary, 0: none of 3
	}{
		{"health probe", errors.New("health http://127.0.0.1:1/health: status 503"), 0},
		{"metric gate", fmt.Errorf("metric gate failed during the canary monitor of 1.1.0: %w",
			&metricgate.Failure{Kind: metricgate.OutOfBounds, Metric: "errors", Query: "up", Value: 2, Bound: "<= 1"}), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			repo := gittest.NewBare(t, nil)
			a := newNode(t, repo, "a", nil)
			web := app(true)
			web.Rollout.Strategy, web.Rollout.Canary = spec.StrategyCanary, spec.Canary{Count: 1, Monitor: spec.Duration{Duration: 5 * time.Minute}}
			web.Health.Retries = 3
			in := input(web, "a", "b")
			p, err := a.coord.Permit(ctx, in)
			if err != nil || p.Lease == nil {
				t.Fatalf("permit = %+v, %v: want the canary's upgrade", p, err)
			}
			p.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
			in.Local.Active = "1.1.0"
			for probe := 1; probe <= 3; probe++ {
				p, err = a.coord.Permit(ctx, in)
				if err != nil || !p.Monitor || p.Lease == nil {
					t.Fatalf("permit = %+v, %v: want the canary monitor, asking for the metric gates", p, err)
				}
				p.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppUnhealthy, Error: tt.err.Error()}, tt.err)
				r := latest(t, a)
				reason, failed := r.Failed["a"]
				if failed != (tt.failedAt != 0 && probe >= tt.failedAt) {
					t.Fatalf("after probe %d: failed %v, want the canary failed from probe %d", probe, r.Failed, tt.failedAt)
				}
				if failed {
					if !strings.Contains(reason, "metric errors out of bounds: up = 2, want <= 1") {
						t.Fatalf("reason %q does not name the gate, query, value and bound", reason)
					}
					return
				}
				a.clock.advance(time.Second)
			}
		})
	}
}
