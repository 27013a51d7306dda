package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/agent/metricgate"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
)

// upgrade hands the agent the target version under the lease this node
// holds. The lease is renewed first (a node that cannot renew gives the
// slot up before downloading anything) and then in the background by the
// lease object until Finish records the outcome and releases it.
func (c *Coordinator) upgrade(ctx context.Context, in agent.DecideInput, d reconciler.Decision) (agent.Permit, error) {
	app := in.App.Name
	l, err := c.opt.Shared.Renew(ctx, d.Lease)
	if err != nil {
		c.log.Warn("lease not renewed before switching: giving the slot up", "app", app, "slot", d.Lease.Slot, "err", err)
		p := waiting(d, "lease lost before switching", c.opt.Clock.Now().Add(time.Second))
		if NeedsPerson(err) || IsTransient(err) {
			return p, fmt.Errorf("renew lease %s/%d: %w", app, d.Lease.Slot, err)
		}
		return p, nil
	}
	h := c.hold(app, rolloutID(d), l)
	c.log.Info("upgrading under lease", "app", app, "version", d.Version, "slot", l.Slot, "token", short(l.Token))
	// Right after the switch, look again: this node may be the one to
	// record its wave done, and the next wave waits for that.
	return agent.Permit{Version: d.Version, Rollout: rolloutID(d), Lease: h, Recheck: c.opt.Clock.Now()}, nil
}

// lease is an agent.Lease: a slot this node holds for one switch. Its
// goroutine renews it every third of its TTL until Finish; from Begin on it
// also cancels the switch's context when the validity runs out.
type lease struct {
	c            *Coordinator
	app, rollout string

	mu     sync.Mutex
	cur    reconciler.Lease
	lost   error              // set once a renewal says the slot is someone else's
	abort  time.Duration      // from Begin: what giving the candidate up takes
	cancel context.CancelFunc // from Begin: ends the switch's context

	// until is when a begun switch must have been given up by (the
	// usable validity's end, on the coordinator's clock), for switchCtx.
	until atomic.Pointer[time.Time]

	kick chan struct{} // Begin tells the goroutine to re-plan its timer
	stop context.CancelFunc
	done chan struct{}

	// token is cur.Token and gone whether lost is set, readable without
	// mu: the outcome's decide reads them inside a store operation, and
	// the goroutine holds mu while it renews through the same store.
	token atomic.Pointer[string]
	gone  atomic.Bool
}

// holding is the token to record an outcome under, and false once a
// renewal found the slot someone else's (nothing is recorded then).
func (h *lease) holding() (string, bool) { return *h.token.Load(), !h.gone.Load() }

// hold starts renewing l in the background.
func (c *Coordinator) hold(app, rollout string, l reconciler.Lease) *lease {
	ctx, stop := context.WithCancel(context.Background())
	h := &lease{c: c, app: app, rollout: rollout, cur: l, kick: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	h.token.Store(&l.Token)
	go func() {
		defer close(h.done)
		h.run(ctx)
	}()
	return h
}

// Token implements agent.Lease.
func (h *lease) Token() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur.Token
}

// usable is how much longer a begun switch may go on: the validity, less
// the skew margin and the time aborting takes. Caller holds mu.
func (h *lease) usable() time.Duration {
	return h.c.opt.Shared.Validity(h.cur) - h.c.opt.SkewMargin - h.abort
}

// Begin implements agent.Lease: renew now, and begin only if the fresh
// validity covers giving the candidate up.
func (h *lease) Begin(ctx context.Context, abort time.Duration) (context.Context, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return nil, fmt.Errorf("%w: lease %s/%d is no longer this node's: %w", agent.ErrNotBegun, h.app, h.cur.Slot, h.lost)
	}
	h.renewLocked(ctx, h.c.opt.LeaseTTL/3)
	if h.lost != nil {
		return nil, fmt.Errorf("%w: lease %s/%d is no longer this node's: %w", agent.ErrNotBegun, h.app, h.cur.Slot, h.lost)
	}
	h.abort = abort
	if v := h.usable(); v <= 0 {
		return nil, fmt.Errorf("%w: lease %s/%d valid for %s on this node's clock, not enough to give the candidate up (%s) with a %s skew margin",
			agent.ErrNotBegun, h.app, h.cur.Slot, h.c.opt.Shared.Validity(h.cur).Round(time.Millisecond), abort, h.c.opt.SkewMargin)
	}
	sctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	h.setUntil()
	select {
	case h.kick <- struct{}{}:
	default:
	}
	return switchCtx{Context: sctx, h: h}, nil
}

// setUntil records when the begun switch must be given up by. Caller holds mu.
func (h *lease) setUntil() {
	until := h.c.opt.Clock.Now().Add(h.usable())
	h.until.Store(&until)
}

// switchCtx is the context a begun switch runs under. Its Err also reads
// the clock: the lease goroutine cancels the switch once the validity runs
// out, but a process stopped (SIGSTOP, a starved CPU) past that point may,
// when it continues, run the switch before that goroutine runs. Checked
// right before the switch, Err says so at once (make chaos seed 11: a holder
// stopped just after Begin started its candidate 10 ms before the goroutine
// cancelled it, 9.7 s after it was recorded failed).
type switchCtx struct {
	context.Context
	h *lease
}

func (c switchCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if until := c.h.until.Load(); until != nil && !c.h.c.opt.Clock.Now().Before(*until) {
		return context.DeadlineExceeded
	}
	return nil
}

// renewLocked renews the lease once, giving up after timeout (a Git server
// that black-holes the connection must not hold the lease goroutine past
// the switch's deadline; a renewal that lands after its answer was given
// up on is adopted at the next one). Caller holds mu.
func (h *lease) renewLocked(ctx context.Context, timeout time.Duration) {
	rctx, cancel := context.WithCancel(ctx)
	t := h.c.opt.Clock.NewTimer(max(timeout, time.Millisecond))
	done := make(chan struct{})
	go func() { // owned here: ends with this call
		select {
		case <-t.C():
			cancel()
		case <-done:
		}
	}()
	defer func() { close(done); t.Stop(); cancel() }()
	l, err := h.c.opt.Shared.Renew(rctx, h.cur)
	switch {
	case err == nil:
		h.cur = l
		h.token.Store(&l.Token)
	case isLost(err):
		h.lost = err
		h.gone.Store(true)
		h.c.log.Warn("lease lost", "app", h.app, "slot", h.cur.Slot, "err", err)
	case ctx.Err() == nil:
		h.c.log.Warn("lease renewal failed; retrying while it is valid", "app", h.app, "slot", h.cur.Slot,
			"valid", h.c.opt.Shared.Validity(h.cur).Round(time.Millisecond), "err", err)
	}
}

// run renews once a third of the TTL has passed since the last write it
// saw land (every quarter of that while renewals fail) and, once a switch
// began, cancels it when its usable validity runs out: before renewing, as
// the time left is the abort's. It ends once the lease is lost.
func (h *lease) run(ctx context.Context) {
	every := h.c.opt.LeaseTTL / 3
	failing := false
	for {
		h.mu.Lock()
		wait := max(h.c.opt.Shared.Validity(h.cur)-(h.c.opt.LeaseTTL-every), 0)
		if failing {
			wait = every / 4
		}
		if h.lost != nil && h.cancel == nil {
			// Lost before Begin: the slot is someone else's, nothing is
			// left to renew (renewing a dead lease again and again was a
			// stream of failed pushes). Begin refuses; Finish frees nothing.
			h.mu.Unlock()
			return
		}
		if h.cancel != nil {
			u := h.usable()
			if u <= 0 || h.lost != nil {
				h.c.log.Error("lease validity ran out mid-switch: giving the candidate up, keeping the old version",
					"app", h.app, "slot", h.cur.Slot, "err", h.lost)
				h.cancel()
				h.mu.Unlock()
				return
			}
			wait = min(wait, u)
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
			continue
		case <-h.c.opt.Clock.After(wait):
		}
		h.mu.Lock()
		timeout := every
		if h.cancel != nil {
			timeout = min(timeout, h.usable()) // back in time to give the switch up
		}
		if timeout > 0 {
			before := h.cur.Token
			h.renewLocked(ctx, timeout)
			failing = h.cur.Token == before && h.lost == nil
			if !failing && h.lost == nil && h.cancel != nil {
				h.setUntil()
			}
		}
		h.mu.Unlock()
	}
}

// isLost reports whether err says the slot is no longer this holding's.
func isLost(err error) bool { return errors.Is(err, fleetrepo.ErrLeaseLost) }

// Finish implements agent.Lease. If the switch ran, it proves the holding
// is still this node's by renewing it (the fence) and records the outcome
// under the lease's token as it stands at each try, while the goroutine
// goes on renewing it; then it stops renewing and releases the slot.
// Renewals used to stop first: on a loaded store recording the outcome
// (reading the record, a lost race, a timeout and the next pass's try)
// took longer than the TTL, and at 10,000 nodes the holders that had
// switched were recorded lost and switched again, each holding its wave
// a TTL longer (docs/scale.md). An outcome decided on a token renewed
// since can land only within one call's timeout of that renewal, far
// inside the TTL that must pass before the renewed token is recorded lost.
func (h *lease) Finish(ctx context.Context, rep reconciler.AppReport, err error) {
	c, app := h.c, h.app
	if !verdict(rep, err) {
		// No verdict: the switch did not run (yet: a download still going
		// on reports upgrading), or was given up with the old version kept.
		// Free the slot if it is still ours.
		h.end()
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.cancel != nil {
			h.cancel() // ends the switch's context
		}
		if h.lost == nil {
			if rerr := c.opt.Shared.Release(ctx, h.cur); rerr != nil {
				c.log.Warn("lease not released (it will expire)", "app", app, "slot", h.cur.Slot, "err", rerr)
			}
		}
		return
	}
	h.mu.Lock()
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil // the switch is over: from here the goroutine only renews
	}
	if h.lost == nil {
		h.renewLocked(ctx, c.opt.LeaseTTL/3)
	}
	lost, valid, slot := h.lost, c.opt.Shared.Validity(h.cur), h.cur.Slot
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}: // re-plan its timer as a plain renewal
	default:
	}
	switch {
	case lost != nil:
		h.end()
		c.log.Error("outcome not recorded: the lease was taken over meanwhile, so it does not count", "app", app,
			"slot", slot, "version", rep.Target, "err", lost)
		return
	case valid <= 0:
		h.end()
		c.log.Warn("outcome not recorded: the lease could not be renewed; it will be next pass", "app", app, "slot", slot)
		return
	}
	aerr := c.record(ctx, app, h.rollout, outcome(c.opt.Node, rep, err), h.holding)
	h.end()
	if aerr != nil {
		c.log.Error("outcome not recorded; it will be again next pass", "app", app, "err", aerr)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil { // nothing of ours to free
		c.log.Warn("lease taken over while the outcome was recorded: recorded only if it landed first", "app", app,
			"slot", h.cur.Slot, "err", h.lost)
		return
	}
	if rerr := c.opt.Shared.Release(ctx, h.cur); rerr != nil {
		c.log.Warn("lease not released (it will expire)", "app", app, "slot", h.cur.Slot, "err", rerr)
	}
}

// end stops the goroutine and waits for it.
func (h *lease) end() {
	h.stop()
	<-h.done
}

// verdict reports whether converging ended in an outcome to record: a
// switch that ran to success or failure, or a failure before it (install,
// verify). A refused Begin, a switch given up or interrupted, and a report
// still in flight (a download running) are none.
func verdict(rep reconciler.AppReport, err error) bool {
	if err != nil {
		return !errors.Is(err, agent.ErrNotBegun) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch rep.State {
	case reconciler.AppHealthy, reconciler.AppFailed, reconciler.AppUnhealthy, reconciler.AppStopped:
		return true
	}
	return false
}

// outcome is the event that records a switch's outcome on node (its
// lease token is set when it is recorded).
func outcome(node string, rep reconciler.AppReport, err error) reconciler.Event {
	ev := reconciler.Event{Type: reconciler.EventNodeDone, Node: node}
	if rep.Swap == reconciler.SwapStopStart { // the record says what the switch cost
		ev.Reason = "swapped " + reconciler.SwapStopStartText
	}
	if err != nil || rep.State != reconciler.AppHealthy {
		reason := rep.Error
		if err != nil {
			reason = err.Error()
		}
		ev = reconciler.Event{Type: reconciler.EventNodeFailed, Node: node, Reason: reason}
	}
	return ev
}

// record appends this node's own verdict, under the lease token that
// holding says at each try, unless the record already has one that wins
// (a failure recorded by another node after a takeover) or holding says
// the slot is no longer this node's.
func (c *Coordinator) record(ctx context.Context, app, rollout string, ev reconciler.Event, holding func() (string, bool)) error {
	ev.Rollout, ev.By = rollout, c.opt.Node
	// Folded as it grows: a node that loses the race to a hundred others
	// of its wave re-decides up to twenty times on a record of thousands.
	var fold reconciler.Folding
	appendEvent := c.opt.Shared.Append
	if cs, ok := c.opt.Shared.(Commuting); ok {
		appendEvent = cs.AppendCommuting
	}
	return appendEvent(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		r := fold.Latest(cur)
		if r == nil || r.ID != rollout || r.Ended() {
			return nil, nil
		}
		if _, failed := r.Failed[c.opt.Node]; failed {
			return nil, nil
		}
		if _, done := r.Done[c.opt.Node]; done && ev.Type == reconciler.EventNodeDone {
			return nil, nil
		}
		token, held := holding()
		if !held {
			return nil, nil
		}
		e := ev
		e.Time, e.Lease = c.opt.Clock.Now(), token
		return &e, nil
	})
}

// monitor has the canary probe its health once now and again after
// retryDelay; more consecutive failures than the spec's retries fail it.
func (c *Coordinator) monitor(in agent.DecideInput, d reconciler.Decision) agent.Permit {
	app := in.App.Name
	next := c.opt.Clock.Now().Add(max(in.App.Health.RetryDelay.Duration, time.Second))
	if !d.Until.IsZero() && d.Until.Before(next) {
		next = d.Until
	}
	return agent.Permit{
		Version: d.Version, Rollout: rolloutID(d), Recheck: next, Monitor: true,
		Lease: watch(func(ctx context.Context, rep reconciler.AppReport, err error) {
			c.mu.Lock()
			if rep.State == reconciler.AppHealthy && err == nil {
				c.failures[app] = 0
				c.mu.Unlock()
				return
			}
			c.failures[app]++
			n := c.failures[app]
			c.mu.Unlock()
			// A metric gate's failure is a measurement, retried already
			// within its interval: it fails the canary at once.
			gate := errors.Is(err, metricgate.ErrFailed)
			if n <= in.App.Health.Retries && !gate {
				return
			}
			reason := fmt.Sprintf("canary health check failed during monitor: %s", rep.Error)
			if gate {
				reason = rep.Error
			}
			ev := reconciler.Event{Type: reconciler.EventNodeFailed, Node: c.opt.Node, Reason: reason}
			if aerr := c.recordMonitor(ctx, app, rolloutID(d), ev); aerr != nil {
				c.log.Error("canary failure not recorded", "app", app, "err", aerr)
			}
		}),
	}
}

// watch is the agent.Lease of a canary monitor: no slot, no switch (the
// version already runs), only the health outcome to act on.
type watch func(ctx context.Context, rep reconciler.AppReport, err error)

func (watch) Token() string { return "" }

// Begin refuses: a monitor permit never switches.
func (watch) Begin(context.Context, time.Duration) (context.Context, error) {
	return nil, fmt.Errorf("%w: a canary monitor holds no lease", agent.ErrNotBegun)
}

func (w watch) Finish(ctx context.Context, rep reconciler.AppReport, err error) { w(ctx, rep, err) }

func (c *Coordinator) recordMonitor(ctx context.Context, app, rollout string, ev reconciler.Event) error {
	ev.Rollout, ev.By, ev.Time = rollout, c.opt.Node, c.opt.Clock.Now()
	return c.opt.Shared.Append(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		if r := reconciler.Latest(cur); r == nil || r.ID != rollout || r.Ended() {
			return nil, nil
		}
		return &ev, nil
	})
}

// rollback writes the rollback commit, then records it with the commit.
// Losing the race to another agent (which records it) or to a person's
// newer commit is not an error, and records nothing: a rolled_back event
// always names the commit that rolled back. written says whether it did.
func (c *Coordinator) rollback(ctx context.Context, in agent.DecideInput, d reconciler.Decision) (written bool, err error) {
	app, r := in.App.Name, d.Rollout
	if c.opt.Rollback == nil {
		return false, fmt.Errorf("rollout of %s %s failed and this agent cannot write rollback commits", app, r.Target)
	}
	reason := r.Reason
	if r.FailedBy != "" {
		reason = "failed on " + r.FailedBy + ": " + r.Reason
	}
	commit, err := c.opt.Rollback(ctx, fleetrepo.RollbackRequest{App: app, Failed: plumbing.NewHash(r.ID),
		Version: r.Target, To: d.Version, Node: r.FailedBy, Reason: reason})
	if errors.Is(err, ErrNoRollback) {
		c.log.Info("no rollback commit written: another agent wrote it, or a person pushed something newer", "app", app, "why", err)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("write rollback commit of %s %s -> %s: %w", app, r.Target, d.Version, err)
	}
	c.log.Info("rollback commit written", "app", app, "from", r.Target, "to", d.Version, "commit", short(commit))
	ev := reconciler.Event{Type: reconciler.EventRolledBack, Rollout: r.ID, By: c.opt.Node, Time: c.opt.Clock.Now(),
		RollbackCommit: commit, Reason: r.Reason, Target: d.Version}
	return true, c.opt.Shared.Append(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		if l := reconciler.Latest(cur); l == nil || l.ID != r.ID || l.Outcome != reconciler.OutcomeFailed {
			return nil, nil
		}
		return &ev, nil
	})
}
