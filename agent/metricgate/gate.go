package metricgate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/spec"
)

// Gate is one app's metric gates on one node.
type Gate struct {
	// Prometheus is the server's URL (health.prometheus, node variables
	// substituted).
	Prometheus string
	// Metrics are the gates, their queries' node variables substituted.
	Metrics []spec.Metric
	// Client sends the queries (default: http.DefaultClient's transport).
	Client *http.Client
	// Clock times the intervals and the retries (default clock.System{}).
	Clock clock.Clock
}

// maxQueryTimeout bounds one query: a Prometheus that holds a connection
// open must not hold the gate past its interval.
const maxQueryTimeout = 10 * time.Second

// Check asks each metric once (retrying, within its interval, a
// Prometheus that does not answer or a query without series) and returns
// the first failure, or nil when every series is in bounds.
func (g *Gate) Check(ctx context.Context) error {
	q, err := g.querier()
	if err != nil {
		return err
	}
	for _, m := range g.Metrics {
		if err := g.eval(ctx, q, m); err != nil {
			return err
		}
	}
	return nil
}

// Watch watches the metrics from now on: each is asked every interval
// (the first one an interval from now, when the switched version has been
// scraped), for its `for` (once, at `for`, when `for` is shorter than
// the interval). It returns the first failure, nil once every metric's
// `for` has passed in bounds, or ctx's error.
func (g *Gate) Watch(ctx context.Context) error {
	q, err := g.querier()
	if err != nil {
		return err
	}
	clk := clock.Or(g.Clock)
	start := clk.Now()
	next := make([]time.Time, len(g.Metrics))
	for i, m := range g.Metrics {
		next[i] = start.Add(min(m.Interval.Duration, m.For.Duration))
	}
	for {
		i := earliest(next)
		if i < 0 {
			return nil
		}
		if err := clk.Sleep(ctx, clk.Until(next[i])); err != nil {
			return fmt.Errorf("metric gates of %s stopped: %w", redact.String(g.Prometheus), err)
		}
		m := g.Metrics[i]
		if err := g.eval(ctx, q, m); err != nil {
			return err
		}
		next[i] = next[i].Add(m.Interval.Duration)
		if next[i].After(start.Add(m.For.Duration)) {
			next[i] = time.Time{} // its `for` has passed
		}
	}
}

// earliest is the index of the earliest non-zero time, -1 when none is.
func earliest(ts []time.Time) int {
	best := -1
	for i, t := range ts {
		if !t.IsZero() && (best < 0 || t.Before(ts[best])) {
			best = i
		}
	}
	return best
}

func (g *Gate) querier() (v1.API, error) {
	c, err := api.NewClient(api.Config{Address: g.Prometheus, Client: g.Client})
	if err != nil {
		return nil, fmt.Errorf("%w: Prometheus URL %s: %w", ErrFailed, redact.String(g.Prometheus), redact.Error(err))
	}
	return v1.NewAPI(c), nil
}

// retryDelay is the wait between attempts of one evaluation: a fifth of
// the interval, within [200ms, 5s].
func retryDelay(interval time.Duration) time.Duration {
	return min(max(interval/5, 200*time.Millisecond), 5*time.Second)
}

// eval asks m's query until it gives a verdict (its series in bounds or
// not, or a refusal) or its interval has passed without one.
func (g *Gate) eval(ctx context.Context, q v1.API, m spec.Metric) error {
	clk := clock.Or(g.Clock)
	deadline := clk.Now().Add(m.Interval.Duration)
	for {
		f := g.ask(ctx, q, m)
		if f == nil || f.verdict() {
			return failure(f)
		}
		if ctx.Err() != nil {
			f.Err = errors.Join(f.Err, context.Cause(ctx))
			return f
		}
		if wait := retryDelay(m.Interval.Duration); clk.Now().Add(wait).After(deadline) {
			f.For = m.Interval.Duration
			return f
		} else if err := clk.Sleep(ctx, wait); err != nil {
			f.Err = errors.Join(f.Err, err)
			return f
		}
	}
}

// failure is f as an error: nil for a nil *Failure.
func failure(f *Failure) error {
	if f == nil {
		return nil
	}
	return f
}

// ask makes one attempt of m's query.
func (g *Gate) ask(ctx context.Context, q v1.API, m spec.Metric) *Failure {
	base := Failure{Metric: m.Name, Query: m.Query, Bound: m.Bounds(), Prometheus: redact.String(g.Prometheus)}
	qctx, cancel := context.WithTimeout(ctx, min(m.Interval.Duration, maxQueryTimeout))
	defer cancel()
	val, _, _, err := q.Query(qctx, m.Query, time.Time{}, v1.WithTimeout(min(m.Interval.Duration, maxQueryTimeout)))
	if err != nil {
		base.Kind, base.Err = Unreachable, redact.Error(err)
		var aerr *v1.Error
		if errors.As(err, &aerr) && (aerr.Type == v1.ErrBadData || aerr.Type == v1.ErrExec) {
			base.Kind = Refused
		}
		return &base
	}
	samples, err := samplesOf(val)
	if err != nil {
		base.Kind, base.Err = Refused, err
		return &base
	}
	return judge(base, m, samples)
}
