package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/reconciler"
)

// upgrade hands the agent the target version under the lease this node
// holds. The lease is renewed first (the point of no return: a node that
// cannot renew gives the slot up) and then every third of its TTL until
// Done records the outcome and releases it.
func (c *Coordinator) upgrade(ctx context.Context, in agent.DecideInput, d reconciler.Decision) agent.Decision {
	app := in.App.Name
	l, err := c.opt.Shared.Renew(ctx, d.Lease)
	if err != nil {
		c.log.Warn("lease not renewed before switching: giving the slot up", "app", app, "slot", d.Lease.Slot, "err", err)
		return waiting(d, "lease lost before switching", c.opt.Now().Add(time.Second))
	}
	h := &held{lease: l}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { c.renew(rctx, h) })
	c.log.Info("upgrading under lease", "app", app, "version", d.Version, "slot", l.Slot, "token", short(l.Token))
	return agent.Decision{
		Version: d.Version, Rollout: rolloutID(d), Lease: l.Token,
		// Right after the switch, look again: this node may be the one to
		// record its wave done, and the next wave waits for that.
		Recheck: c.opt.Now(),
		Done: func(ctx context.Context, rep reconciler.AppReport, err error) {
			stop()
			wg.Wait()
			c.finish(ctx, app, rolloutID(d), h.get(), rep, err)
		},
	}
}

// held is a lease being renewed in the background.
type held struct {
	mu    sync.Mutex
	lease reconciler.Lease
	lost  error
}

func (h *held) get() reconciler.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

// renew keeps the lease alive until ctx ends. Once the switch has begun a
// lost lease does not stop it (a Git outage must not roll the fleet back);
// the fence in finish decides whether the outcome still counts.
func (c *Coordinator) renew(ctx context.Context, h *held) {
	t := time.NewTicker(c.opt.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l, err := c.opt.Shared.Renew(ctx, h.get())
			h.mu.Lock()
			if err == nil {
				h.lease = l
			} else if ctx.Err() == nil {
				h.lost = err
				c.log.Warn("lease renewal failed", "app", l.App, "err", err)
			}
			h.mu.Unlock()
		}
	}
}

// finish records this node's outcome under its lease, then releases it.
func (c *Coordinator) finish(ctx context.Context, app, rollout string, l reconciler.Lease, rep reconciler.AppReport, err error) {
	ev := reconciler.Event{Type: reconciler.EventNodeDone, Node: c.opt.Node, Lease: l.Token}
	if rep.Swap == reconciler.SwapStopStart { // the record says what the switch cost
		ev.Reason = "swapped " + reconciler.SwapStopStartText
	}
	if err != nil || rep.State != reconciler.AppHealthy {
		reason := rep.Error
		if err != nil {
			reason = err.Error()
		}
		ev = reconciler.Event{Type: reconciler.EventNodeFailed, Node: c.opt.Node, Lease: l.Token, Reason: reason}
	}
	if aerr := c.record(ctx, app, rollout, ev); aerr != nil {
		c.log.Error("outcome not recorded; it will be again next pass", "app", app, "event", ev.Type, "err", aerr)
	}
	if rerr := c.opt.Shared.Release(ctx, l); rerr != nil {
		c.log.Warn("lease not released (it will expire)", "app", app, "slot", l.Slot, "err", rerr)
	}
}

// record appends this node's own verdict unless the record already has one
// that wins (a failure recorded by another node after a takeover).
func (c *Coordinator) record(ctx context.Context, app, rollout string, ev reconciler.Event) error {
	ev.Rollout, ev.By = rollout, c.opt.Node
	return c.opt.Shared.Append(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		r := reconciler.Latest(cur)
		if r == nil || r.ID != rollout || r.Ended() {
			return nil, nil
		}
		if _, failed := r.Failed[c.opt.Node]; failed {
			return nil, nil
		}
		if _, done := r.Done[c.opt.Node]; done && ev.Type == reconciler.EventNodeDone {
			return nil, nil
		}
		e := ev
		e.Time = c.opt.Now()
		return &e, nil
	})
}

// monitor has the canary probe its health once now and again after
// retryDelay; more consecutive failures than the spec's retries fail it.
func (c *Coordinator) monitor(in agent.DecideInput, d reconciler.Decision) agent.Decision {
	app := in.App.Name
	next := c.opt.Now().Add(max(in.App.Health.RetryDelay.Duration, time.Second))
	if !d.Until.IsZero() && d.Until.Before(next) {
		next = d.Until
	}
	return agent.Decision{
		Version: d.Version, Rollout: rolloutID(d), Recheck: next,
		Done: func(ctx context.Context, rep reconciler.AppReport, err error) {
			c.mu.Lock()
			if rep.State == reconciler.AppHealthy && err == nil {
				c.failures[app] = 0
				c.mu.Unlock()
				return
			}
			c.failures[app]++
			n := c.failures[app]
			c.mu.Unlock()
			if n <= in.App.Health.Retries {
				return
			}
			reason := fmt.Sprintf("canary health check failed during monitor: %s", rep.Error)
			ev := reconciler.Event{Type: reconciler.EventNodeFailed, Node: c.opt.Node, Reason: reason}
			if aerr := c.recordMonitor(ctx, app, rolloutID(d), ev); aerr != nil {
				c.log.Error("canary failure not recorded", "app", app, "err", aerr)
			}
		},
	}
}

func (c *Coordinator) recordMonitor(ctx context.Context, app, rollout string, ev reconciler.Event) error {
	ev.Rollout, ev.By, ev.Time = rollout, c.opt.Node, c.opt.Now()
	return c.opt.Shared.Append(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		if r := reconciler.Latest(cur); r == nil || r.ID != rollout || r.Ended() {
			return nil, nil
		}
		return &ev, nil
	})
}

// rollback writes the rollback commit, then records it. Losing the race to
// another agent (or to a person's newer commit) is not an error.
func (c *Coordinator) rollback(ctx context.Context, in agent.DecideInput, d reconciler.Decision) error {
	app, r := in.App.Name, d.Rollout
	if c.opt.Rollback == nil {
		return fmt.Errorf("rollout of %s %s failed and this agent cannot write rollback commits", app, r.Target)
	}
	commit, err := c.opt.Rollback(ctx, RollbackRequest{App: app, Failed: r.Target, To: d.Version,
		Rollout: r.ID, Node: r.FailedBy, Reason: r.Reason})
	if errors.Is(err, ErrNoRollback) {
		c.log.Info("rollback commit already written or superseded", "app", app)
	} else if err != nil {
		return fmt.Errorf("write rollback commit of %s %s -> %s: %w", app, r.Target, d.Version, err)
	} else {
		c.log.Info("rollback commit written", "app", app, "from", r.Target, "to", d.Version, "commit", short(commit))
	}
	ev := reconciler.Event{Type: reconciler.EventRolledBack, Rollout: r.ID, By: c.opt.Node, Time: c.opt.Now(),
		RollbackCommit: commit, Reason: r.Reason, Target: d.Version}
	return c.opt.Shared.Append(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		if l := reconciler.Latest(cur); l == nil || l.ID != r.ID || l.Outcome != reconciler.OutcomeFailed {
			return nil, nil
		}
		return &ev, nil
	})
}
