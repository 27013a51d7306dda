// Package rollout coordinates a node's upgrades with the rest of the fleet:
// it is the agent's Decider that plugs the pure rollout engine
// (reconciler.Decide) into the shared state in Git.
//
// Role: for each app on each pass, read the rollout record, the leases and
// the node reports; ask the engine what to do; carry out the bookkeeping
// (appending events, taking leases, writing rollback commits) itself; and
// hand the agent the one version to converge to now, with a Done callback
// that records the outcome and releases the lease.
//
// Invariants: this node switches versions only under a lease it has just
// renewed (or for a rollback, which applies at once); every outcome of a
// switch made under a lease is recorded with that lease's token as fence.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/reconciler"
)

// Shared is the fleet's shared state (*fleetrepo.Shared).
type Shared interface {
	Reports(ctx context.Context) (map[string]reconciler.NodeReport, error)
	Record(ctx context.Context, app string) ([]reconciler.Event, error)
	Append(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error
	Leases(ctx context.Context, app string) ([]reconciler.Lease, error)
	Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error)
	Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error)
	Release(ctx context.Context, l reconciler.Lease) error
}

// RollbackFunc writes the rollback commit of app on the tracked branch:
// restore version to, as before the commit that set failed. It returns the
// new commit, or an error matching ErrNoRollback when someone else already
// did it or a person pushed something newer.
type RollbackFunc func(ctx context.Context, req RollbackRequest) (string, error)

// RollbackRequest is what a rollback commit needs.
type RollbackRequest struct {
	App, Failed, To string
	Rollout         string // the rollout id (the commit that set Failed)
	Node, Reason    string
}

// ErrNoRollback is returned by a RollbackFunc that had nothing to do.
var ErrNoRollback = errors.New("no rollback needed")

// Options configures a Coordinator. Zero values take the defaults in comments.
type Options struct {
	Node     string
	Shared   Shared
	Rollback RollbackFunc
	// LeaseTTL is how long a lease lives without renewal (default 20s);
	// it is renewed every third of that while the node switches.
	LeaseTTL time.Duration
	// ActivePoll is how often a node waiting in a rollout in progress looks
	// at the shared state again (default 2s); idle nodes rely on watches.
	ActivePoll time.Duration
	Logger     *slog.Logger     // default: discard
	Now        func() time.Time // default time.Now (monotonic readings matter)
}

// Coordinator is an agent.Decider that follows the lease protocol.
type Coordinator struct {
	opt Options
	log *slog.Logger

	mu       sync.Mutex
	seen     map[string][]time.Time // app -> when each record event was first seen
	failures map[string]int         // app -> consecutive canary monitor failures
	// settled: app -> the tip and version at which this node was up to
	// date with the rollout ended. Nothing in the shared state can change
	// that until the tip moves, so an idle node reads no shared state.
	settled map[string]string
}

// New returns a Coordinator.
func New(opt Options) (*Coordinator, error) {
	if opt.Node == "" || opt.Shared == nil {
		return nil, errors.New("rollout coordinator: Node and Shared are required")
	}
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = 20 * time.Second
	}
	if opt.ActivePoll <= 0 {
		opt.ActivePoll = 2 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Coordinator{opt: opt, log: opt.Logger.With("node", opt.Node),
		seen: map[string][]time.Time{}, failures: map[string]int{}, settled: map[string]string{}}, nil
}

// maxSteps bounds the bookkeeping one pass does for one app.
const maxSteps = 12

// Decide implements agent.Decider.
func (c *Coordinator) Decide(ctx context.Context, in agent.DecideInput) (agent.Decision, error) {
	if c.isSettled(in) {
		return agent.Decision{Version: in.App.Version}, nil
	}
	// Reports change slowly and only feed the inventory and From: read
	// them once per decision, the record and leases at every step.
	reports, err := c.opt.Shared.Reports(ctx)
	if err != nil {
		err = fmt.Errorf("read node reports: %w", err)
		return agent.Decision{Waiting: "shared state unreadable: " + err.Error(), Recheck: c.opt.Now().Add(5 * time.Second)}, err
	}
	for range maxSteps {
		rin, err := c.input(ctx, in, reports)
		if err != nil {
			return agent.Decision{Waiting: "shared state unreadable: " + err.Error(), Recheck: c.opt.Now().Add(5 * time.Second)}, err
		}
		d := reconciler.Decide(rin)
		again, out, err := c.act(ctx, in, rin, d)
		if err != nil || !again {
			return out, err
		}
	}
	return agent.Decision{Waiting: "rollout bookkeeping in progress", Recheck: c.opt.Now()}, nil
}

// act carries out one engine decision. again asks for a fresh decision.
func (c *Coordinator) act(ctx context.Context, in agent.DecideInput, rin reconciler.Input, d reconciler.Decision) (again bool, out agent.Decision, err error) {
	app := in.App.Name
	switch d.Action {
	case reconciler.Append:
		return true, out, c.appendEvent(ctx, rin, d)
	case reconciler.Acquire:
		l, err := c.opt.Shared.Acquire(ctx, app, d.Slot, c.opt.Node, rolloutID(d), c.opt.LeaseTTL)
		if err != nil {
			c.log.Debug("lease not taken", "app", app, "slot", d.Slot, "err", err)
			return false, waiting(d, "waiting for a lease slot", c.opt.Now().Add(time.Second)), nil
		}
		c.log.Info("lease taken", "app", app, "slot", l.Slot, "rollout", l.Rollout, "token", short(l.Token))
		return true, out, nil
	case reconciler.Upgrade:
		return false, c.upgrade(ctx, in, d), nil
	case reconciler.Converge:
		c.log.Info("rollback: switching at once", "app", app, "version", d.Version)
		return false, agent.Decision{Version: d.Version, Rollout: rolloutID(d)}, nil
	case reconciler.Monitor:
		return false, c.monitor(in, d), nil
	case reconciler.Rollback:
		return true, out, c.rollback(ctx, in, d)
	}
	until := d.Until
	if until.IsZero() && d.Rollout != nil && !d.Rollout.Ended() {
		until = c.opt.Now().Add(c.opt.ActivePoll) // a rollout moves: look again soon
	}
	if in.Local.Active == in.App.Version {
		if d.Rollout != nil && d.Rollout.Ended() {
			c.settle(in)
		}
		// Up to date: let the agent probe its health as usual.
		return false, agent.Decision{Version: in.App.Version, Rollout: rolloutID(d), Recheck: until}, nil
	}
	return false, waiting(d, d.Reason, until), nil
}

func settledKey(in agent.DecideInput) string { return in.Commit.String() + "@" + in.App.Version }

// settle remembers that this node is done with the app at this tip.
func (c *Coordinator) settle(in agent.DecideInput) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settled[in.App.Name] = settledKey(in)
}

// isSettled reports whether nothing can be left to do for the app: same
// tip, same version running, as when this node last found it settled.
func (c *Coordinator) isSettled(in agent.DecideInput) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return in.Local.Active == in.App.Version && in.Local.Failed != in.App.Version &&
		c.settled[in.App.Name] == settledKey(in)
}

// input gathers the engine's input for one app.
func (c *Coordinator) input(ctx context.Context, in agent.DecideInput, reports map[string]reconciler.NodeReport) (reconciler.Input, error) {
	app := in.App.Name
	record, err := c.opt.Shared.Record(ctx, app)
	if err != nil {
		return reconciler.Input{}, fmt.Errorf("read rollout record of %s: %w", app, err)
	}
	leases, err := c.opt.Shared.Leases(ctx, app)
	if err != nil {
		return reconciler.Input{}, fmt.Errorf("read leases of %s: %w", app, err)
	}
	now := c.opt.Now()
	return reconciler.Input{
		Node: c.opt.Node, App: in.App, Tip: in.Commit.String(), Targeted: true,
		Self:      self(in),
		Inventory: reconciler.InventoryOf(in.Fleet.Nodes, reports),
		Reports:   reports, Record: record, Seen: c.observe(app, len(record), now),
		Leases: leases, Now: now, Rollback: in.Rollback,
	}, nil
}

// observe extends an app's first-seen times to n events, stamping the new
// ones with now, and returns a copy.
func (c *Coordinator) observe(app string, n int, now time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen[app]
	if n < len(s) { // the record was replaced: start over
		s = nil
	}
	for len(s) < n {
		s = append(s, now)
	}
	c.seen[app] = s
	return append([]time.Time(nil), s...)
}

// self is this node's own state for the engine.
func self(in agent.DecideInput) reconciler.AppReport {
	r := reconciler.AppReport{Version: in.Local.Active, State: reconciler.AppHealthy}
	switch {
	case in.Local.Active == "":
		r.State = reconciler.AppStopped
	case in.Local.Failed == in.App.Version:
		r.State = reconciler.AppFailed
	}
	return r
}

// appendEvent appends the decided event by compare-and-swap, re-deciding
// on the current record when another writer got there first.
func (c *Coordinator) appendEvent(ctx context.Context, rin reconciler.Input, d reconciler.Decision) error {
	app := rin.App.Name
	err := c.opt.Shared.Append(ctx, app, func(cur []reconciler.Event) (*reconciler.Event, error) {
		rin.Record, rin.Seen = cur, c.observe(app, len(cur), rin.Now)
		again := reconciler.Decide(rin)
		if again.Action != reconciler.Append || again.Event.Type != d.Event.Type {
			return nil, nil // someone else recorded it, or it is moot now
		}
		return again.Event, nil
	})
	if err != nil {
		return fmt.Errorf("append %s to the rollout record of %s: %w", d.Event.Type, app, err)
	}
	c.log.Info("rollout event", "app", app, "event", d.Event.Summary())
	return nil
}

func waiting(d reconciler.Decision, why string, until time.Time) agent.Decision {
	return agent.Decision{Waiting: why, Recheck: until, Rollout: rolloutID(d)}
}

func rolloutID(d reconciler.Decision) string {
	if d.Rollout == nil {
		return ""
	}
	return d.Rollout.ID
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
