// Package rollout coordinates a node's upgrades with the rest of the fleet:
// it is the agent's Coordinator that plugs the pure rollout engine
// (reconciler.Decide) into the shared state in Git.
//
// Role: for each app on each pass, read the rollout record, the leases and
// the node reports; ask the engine what to do; carry out the bookkeeping
// (appending events, taking leases, writing rollback commits) itself; and
// give the agent a Permit: the one version to converge to now, with the
// lease object (renewed in the background by a goroutine it owns) that
// lets the switch begin and records its outcome when finished.
//
// Invariants (docs/rollouts.md, "The validity rule"): this node begins a
// switch only when its lease, just renewed, stays valid on its own clock
// for longer than giving the candidate up takes, and abandons the switch
// when that validity runs out; an observer could expire the lease only
// later. Every outcome of a switch under a lease is recorded only after a
// renewal proved the holding is still this node's (the fence), with the
// renewed token.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// Shared is the fleet's shared state (*fleetrepo.Shared; fleetsim's
// in-memory store in the simulation). Its contract, which the protocol's
// safety rests on (docs/shared-state.md):
//
//   - Record's events, and those Append hands decide, are read-only: a
//     store may share them with its cache (etcdstore does).
//   - Append is a compare-and-swap on the app's record: decide sees the
//     current events and returns the one to append (nil: nothing).
//   - AppendGuarded is Append that lands only if each lease slot of the
//     guard is still at the token the caller read ("": never written), in
//     the same transaction as the record's swap (one atomic push naming
//     the lease refs on Git; one Txn on etcd); otherwise nothing is
//     written and the error wraps fleetrepo.ErrGuardMoved. A verdict on
//     another node rests on the leases: it is written this way.
//   - Leases reports each slot with Unchanged measured on this handle's
//     clock from when it first saw the slot's current token; a held lease
//     is expired only after TTL unchanged.
//   - Acquire, Renew and Release are compare-and-swaps on a slot. Renew and
//     Release fail with an error wrapping fleetrepo.ErrLeaseLost once
//     another holding took the slot,
//     and succeed on a slot that moved only by this same holding's own
//     writes whose answers were lost.
//   - Validity is TTL minus the time since this handle sent the write that
//     made l.Token, on its own clock (0 for a token it did not write).
//   - Errors say what to do: an error with a NeedsPerson() true method
//     (a refused push, refused credentials) blocks until a person acts;
//     one with Transient() true is retried with jittered backoff.
type Shared interface {
	Reports(ctx context.Context) (map[string]reconciler.NodeReport, error)
	Record(ctx context.Context, app string) ([]reconciler.Event, error)
	Append(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error
	AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide func([]reconciler.Event) (*reconciler.Event, error)) error
	Leases(ctx context.Context, app string) ([]reconciler.Lease, error)
	Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error)
	Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error)
	Release(ctx context.Context, l reconciler.Lease) error
	Validity(l reconciler.Lease) time.Duration
}

// Commuting is an optional interface of a Shared that appends an event
// whose meaning does not depend on events other writers append at the same
// time: decide sees the record as read, and the event may land after
// events it did not see. A node's own outcome (node_done, node_failed
// under its lease token) is such an event: the fold keeps a failure
// sticky, ignores a node_done whose lease was recorded lost, and folds
// only the latest rollout's events, so where it lands among its wave's
// others changes nothing. With Append, the nodes of a wave recording
// their outcomes at once lose the race to each other about wave²/4 times
// (docs/scale.md). etcdstore implements it; the Git store does not (its
// pushes carry one ref update each).
type Commuting interface {
	AppendCommuting(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error
}

// ReportCounter is an optional interface of a Shared that counts the node
// reports without reading them (etcd: a count-only range), for the start
// window of an app's first rollout (startWindow).
type ReportCounter interface {
	CountReports(ctx context.Context) (int, error)
}

// Pusher is an optional interface of a Shared whose watch (the agent's
// Config.SharedWatch) reports every change to records and leases as it
// happens, so a waiting node need not poll it often. The Git store polls
// (or, on this machine, watches files) and does not implement it.
type Pusher interface {
	PushesChanges() bool
}

// Focuser is an optional interface of a Shared whose watch can leave out
// the changes a node does not wait for. After each pass the coordinator
// says whether a lease moving in app can change what this node does:
// only while it waits for a free slot (etcdstore).
type Focuser interface {
	Focus(app string, leases bool)
}

// WaveFocuser is an optional interface of a Shared whose watch can leave
// out the events a node does not wait for: the wave_done events of
// rollout's waves below from, and its verdicts on nodes and its pauses
// and resumes (0: none left out). A node two or more waves behind acts
// when the wave before its own is done, not at each wave before nor at
// each node lost or skipped in them (its timer covers the rest).
type WaveFocuser interface {
	FocusWaves(app, rollout string, from int)
}

// EndFocuser is an optional interface of a Shared whose watch can leave
// out every event of rollout but its end (and those of another rollout):
// a node done, in a wave recorded done, acts on nothing else. FocusWaves
// ends it.
type EndFocuser interface {
	FocusEnd(app, rollout string)
}

// Snapshotter is an optional interface of a Shared whose every read asks
// the store (the Git store: a ref listing per read). Snapshot asks once and
// returns a context under which the reads of one decision (Record, Leases)
// answer from that answer: one request where there were three. Writes never
// use it.
type Snapshotter interface {
	Snapshot(ctx context.Context, app string) (context.Context, error)
}

var _ Snapshotter = (*fleetrepo.Shared)(nil)

// RollbackFunc writes the rollback commit of req.App on the tracked branch
// (fleetrepo.(*Desired).Rollback, as this node): restore req.To, the
// version the fleet ran, undoing the commit req.Failed that set
// req.Version. It returns the new commit, or an error matching
// ErrNoRollback when someone else already did it or a person pushed
// something newer. The request is fleetrepo's: one type for the agent's
// rollbacks and the operator's.
type RollbackFunc func(ctx context.Context, req fleetrepo.RollbackRequest) (string, error)

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
	// With a Shared that pushes changes (a Pusher: etcdstore, whose Watch
	// wakes the agent within milliseconds of a record or lease change) a
	// waiting node learns of a change from the watch, and the poll only
	// bounds what no write announces (a holder going silent, nodeTimeout):
	// its default is then 5s.
	ActivePoll time.Duration
	// SkewMargin is subtracted from a lease's validity for the difference
	// in clock rates between this node and its observers (default TTL/10).
	SkewMargin time.Duration
	// Descends reports whether commit tip of the tracked branch descends
	// from (or is) commit ancestor; false when ancestor is unknown (a tip
	// older than it). Only a descendant tip may supersede a rollout or
	// change its pause and options. Nil: every tip descends.
	Descends func(tip, ancestor string) bool
	// Approvals lists the approval commits of app's rollout (its id) in
	// the history of tip (fleetrepo.ApprovalsOf), asked only while the
	// rollout waits at an approval gate and once per tip. Nil: none, and
	// a gated wave waits for ever.
	Approvals func(tip, app, rollout string) ([]reconciler.Approval, error)
	Logger    *slog.Logger // default: discard
	// StartJitter spreads the start of a rollout: a node that finds a tip
	// whose rollout nobody started waits a part of a window its name and
	// the tip pick, StartJitter long for each ten nodes of the fleet (at
	// least StartJitter), and decides again before it reads the node
	// reports and appends started (default 1s; negative: none). With a
	// push reaching 1,000 nodes within 0.25 s, each read the 1,000 reports
	// to plan a rollout only one could start (docs/scale.md).
	StartJitter time.Duration
	// Clock is the coordinator's time source, for the engine's Now, wave
	// timers and the lease goroutine's waits (default clock.System{});
	// tests and internal/fleetsim pass a *clock.Fake. It must be the clock
	// of Shared too: validity is measured on it.
	Clock clock.Clock
}

// Coordinator is an agent.Coordinator that follows the lease protocol.
type Coordinator struct {
	opt Options
	log *slog.Logger

	mu       sync.Mutex
	seen     map[string]reconciler.SeenTimes // app -> when each record event was first seen
	failures map[string]int                  // app -> consecutive canary monitor failures
	// settled: app -> the tip and version at which this node was up to
	// date with the rollout ended. Nothing in the shared state can change
	// that until the tip moves, so an idle node reads no shared state.
	settled map[string]string
	retries map[string]int // app -> consecutive transient errors (backoff)
	// approvals: app -> the approvals read for one tip and rollout.
	approvals map[string]approvalsAt
	// folds: app -> its record's latest rollout, kept folded between
	// passes (a pass takes it out while it decides).
	folds map[string]*reconciler.Folding
	// starts: app -> when this node may start the rollout of a tip (startAt).
	starts map[string]startTime
	// leaseReads: app -> its leases as last read, for the passes of a node
	// whose wave is not open yet (leasesFor)
	leaseReads map[string]leaseRead
}

// startTime is when this node may start the rollout of key (tip@version).
type startTime struct {
	key string
	at  time.Time
}

// approvalsAt is what Options.Approvals answered for a tip and a rollout.
type approvalsAt struct {
	key  string // tip + "@" + rollout
	list []reconciler.Approval
}

// New returns a Coordinator.
func New(opt Options) (*Coordinator, error) {
	if opt.Node == "" || opt.Shared == nil {
		return nil, errors.New("rollout coordinator: Node and Shared are required")
	}
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = 20 * time.Second
	}
	if p, ok := opt.Shared.(Pusher); opt.ActivePoll <= 0 && ok && p.PushesChanges() {
		opt.ActivePoll = 5 * time.Second
	}
	if opt.ActivePoll <= 0 {
		opt.ActivePoll = 2 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Clock == nil {
		opt.Clock = clock.System{}
	}
	if opt.SkewMargin <= 0 {
		opt.SkewMargin = opt.LeaseTTL / 10
	}
	if opt.StartJitter == 0 {
		opt.StartJitter = time.Second
	}
	return &Coordinator{opt: opt, log: opt.Logger.With("node", opt.Node), retries: map[string]int{},
		seen: map[string]reconciler.SeenTimes{}, failures: map[string]int{}, settled: map[string]string{},
		approvals: map[string]approvalsAt{}, folds: map[string]*reconciler.Folding{}, starts: map[string]startTime{},
		leaseReads: map[string]leaseRead{}}, nil
}

// maxSteps bounds the bookkeeping one pass does for one app.
const maxSteps = 12

// Permit implements agent.Coordinator.
func (c *Coordinator) Permit(ctx context.Context, in agent.DecideInput) (agent.Permit, error) {
	if c.isSettled(in) {
		return agent.Permit{Version: in.App.Version}, nil
	}
	p, err := c.permit(ctx, in)
	app := in.App.Name
	switch {
	case err == nil:
		c.backoff(app, false)
	case NeedsPerson(err):
		c.backoff(app, false)
		p = agent.Permit{Blocked: blockedText(err), Rollout: p.Rollout}
		c.log.Error("rollout blocked: a person must act", "app", app, "err", err)
	default:
		p.Version, p.Lease = "", nil
		if p.Waiting == "" {
			p.Waiting = "shared state unreachable: " + err.Error()
		}
		p.Recheck = c.opt.Clock.Now().Add(c.backoff(app, true))
	}
	return p, err
}

func (c *Coordinator) permit(ctx context.Context, in agent.DecideInput) (agent.Permit, error) {
	// Node reports feed only the plan and From of a rollout being started
	// (the inventory): they are read only for a decision that starts one,
	// never by a node waiting in a rollout (with a thousand nodes, a
	// thousand reports changing all the time).
	var reports map[string]reconciler.NodeReport
	fetch := false // a step wrote to the tracked branch
	fold := c.takeFold(in.App.Name)
	defer c.putFold(in.App.Name, fold)
	st := step{fold: fold}
	for range maxSteps {
		st.read = c.opt.Clock.Now()
		rin, err := c.input(ctx, in, reports, fold)
		if err != nil {
			// No decision: no lease change is what this node waits for
			// (its retry after a backoff is). A node whose first read
			// failed was otherwise never focused, and every lease taken
			// or freed woke it: at 10,000 nodes, the first reads timing
			// out, thousands of nodes re-read the record at every one
			// (docs/scale.md).
			c.leasesMatter(in.App.Name, false)
			return agent.Permit{Fetch: fetch}, err
		}
		d := reconciler.Decide(rin)
		if reports == nil && d.Action == reconciler.Append && d.Event.Type == reconciler.EventStarted {
			if at, wait := c.startAt(ctx, in, rin); wait {
				return agent.Permit{Fetch: fetch, Recheck: at,
					Waiting: "about to start the rollout of " + in.App.Version + " (after a jitter: one of many nodes starts it)"}, nil
			}
			if reports, err = c.opt.Shared.Reports(ctx); err != nil {
				return agent.Permit{Fetch: fetch}, fmt.Errorf("read node reports: %w", err)
			}
			if reports == nil {
				reports = map[string]reconciler.NodeReport{}
			}
			continue // plan over the inventory
		}
		again, out, err := c.act(ctx, in, rin, d, &st)
		fetch = fetch || out.Fetch
		if err != nil || !again {
			c.focus(in.App.Name, d)
			out.Fetch = fetch
			return out, err
		}
	}
	return agent.Permit{Waiting: "rollout bookkeeping in progress", Recheck: c.opt.Clock.Now(), Fetch: fetch}, nil
}

// backoff counts consecutive transient errors of app (or resets them) and
// returns the jittered delay before the next try: 1s doubling to 30s,
// each drawn from [d/2, d).
func (c *Coordinator) backoff(app string, failed bool) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !failed {
		delete(c.retries, app)
		return 0
	}
	c.retries[app]++
	d := min(time.Second<<min(c.retries[app]-1, 5), 30*time.Second)
	return d/2 + rand.N(d/2)
}

// NeedsPerson reports whether err is one retrying cannot fix (a refused
// push, refused credentials): it wraps an error whose NeedsPerson method
// says so (fleetrepo's classification).
func NeedsPerson(err error) bool {
	var p interface{ NeedsPerson() bool }
	return errors.As(err, &p) && p.NeedsPerson()
}

// blockedText is the report's words for a rejection.
func blockedText(err error) string {
	return "blocked: " + err.Error() + ", a person must act"
}

// step is what a pass knows of the decision it acts on: when the shared
// state it rests on was read (see stale).
type step struct {
	read time.Time
	fold *reconciler.Folding // the pass's fold of the record, extended by every re-decision
	// acquired is the token of the lease this pass took, "" if none.
	acquired string
}

// act carries out one engine decision. again asks for a fresh decision.
func (c *Coordinator) act(ctx context.Context, in agent.DecideInput, rin reconciler.Input, d reconciler.Decision, st *step) (again bool, out agent.Permit, err error) {
	app := in.App.Name
	switch d.Action {
	case reconciler.Append:
		return true, out, c.appendEvent(ctx, rin, d, st.fold)
	case reconciler.Acquire:
		l, err := c.opt.Shared.Acquire(ctx, app, d.Slot, c.opt.Node, rolloutID(d), c.opt.LeaseTTL)
		if err != nil {
			if NeedsPerson(err) || IsTransient(err) {
				return false, waiting(d, "waiting for a lease slot", time.Time{}), fmt.Errorf("take lease %s/%d: %w", app, d.Slot, err)
			}
			c.log.Debug("lease not taken", "app", app, "slot", d.Slot, "err", err)
			return false, waiting(d, "waiting for a lease slot", c.opt.Clock.Now().Add(time.Second)), nil
		}
		c.log.Info("lease taken", "app", app, "slot", l.Slot, "rollout", l.Rollout, "token", short(l.Token))
		st.acquired = l.Token
		return true, out, nil
	case reconciler.Upgrade:
		if d.Lease.Token == st.acquired && reconciler.Overfull(in.App, d.Rollout, rin.Leases, d.Lease) {
			// Taken on reads older than the compare-and-swap: a lower
			// batch size recorded, or another node's slot taken, between
			// them (fleetsim's operator seeds 23 and 533). The reads made
			// after it bound the holders: give it up before installing
			// anything, and wait for a slot.
			c.log.Info("lease taken past the batch size that reads made since allow: giving it up", "app", app, "slot", d.Lease.Slot)
			if err := c.opt.Shared.Release(ctx, d.Lease); err != nil && !isLost(err) {
				return false, waiting(d, "lease past the batch size not released", time.Time{}), fmt.Errorf("release lease %s/%d: %w", app, d.Lease.Slot, err)
			}
			st.acquired = ""
			return true, out, nil
		}
		if why, expired := c.stale(d, st); why != "" {
			// This node stalled between reading and acting (a stopped
			// process, a starved CPU): observers may have recorded it
			// failed meanwhile. Read again rather than act on the past.
			c.log.Warn("decision not acted on: "+why+"; deciding again", "app", app, "slot", d.Lease.Slot)
			if expired {
				// Never renewed again: give the slot up; the engine
				// may hand this node a fresh lease if the record
				// still allows it.
				if err := c.opt.Shared.Release(ctx, d.Lease); err != nil && !isLost(err) {
					return false, waiting(d, "expired lease not released", time.Time{}), fmt.Errorf("release expired lease %s/%d: %w", app, d.Lease.Slot, err)
				}
			}
			return true, out, nil
		}
		p, err := c.upgrade(ctx, in, d)
		return false, p, err
	case reconciler.Converge:
		c.log.Info("rollback: switching at once", "app", app, "version", d.Version)
		return false, agent.Permit{Version: d.Version, Rollout: rolloutID(d)}, nil
	case reconciler.Monitor:
		return false, c.monitor(in, d), nil
	case reconciler.Rollback:
		written, err := c.rollback(ctx, in, d)
		if err != nil || written {
			w := waiting(d, d.Reason, time.Time{})
			w.Fetch = written // read the branch with the rollback commit at once
			return written, w, err
		}
		// Nothing written: the tip moves (the other agent's rollback commit,
		// or a person's); wait for it rather than asking again at once.
		return false, waiting(d, "rollback commit written elsewhere or superseded; waiting for the tip to move",
			c.opt.Clock.Now().Add(c.opt.ActivePoll)), nil
	}
	until := d.Until
	if until.IsZero() && d.Rollout != nil && !d.Rollout.Ended() {
		until = c.opt.Clock.Now().Add(c.activePoll(d)) // a rollout moves: look again soon
	}
	if in.Local.Active == in.App.Version && in.Local.Failed != in.App.Version {
		if d.Rollout != nil && d.Rollout.Ended() {
			c.settle(in)
		}
		// Up to date: let the agent probe its health as usual.
		return false, agent.Permit{Version: in.App.Version, Rollout: rolloutID(d), Recheck: until}, nil
	}
	if in.Local.Failed == in.App.Version {
		// The target failed here and is not retried: the agent reports the
		// remembered failure; no lease is taken (issue 17, bug 5).
		return false, agent.Permit{Version: in.App.Version, Rollout: rolloutID(d), Recheck: until}, nil
	}
	if r := d.Rollout; r != nil && r.Ended() && r.Target == in.App.Version && in.Local.Active != "" && hasFailed(r, c.opt.Node) {
		// Recorded failed in a rollout that is over (its switch was given
		// up, or its lease expired): it keeps serving what it runs, and
		// says so, healthy, until the target changes.
		return false, agent.Permit{Version: in.Local.Active, Rollout: r.ID}, nil
	}
	return false, waiting(d, d.Reason, until), nil
}

// On a store that pushes changes, farPollFactor stretches ActivePoll for
// a node of the next wave that judges no node of the open one, and
// farthestPollFactor for a node two or more waves behind.
const (
	farPollFactor      = 6
	farthestPollFactor = 24
)

// activePoll is how soon a node waiting in a rollout in progress looks
// again when nothing wakes it. What no write announces (a holder gone
// silent, a node past nodeTimeout, a wave whose last node died before
// recording it done) the nodes of the open wave and the first judges of
// its last nodes (the first reconciler.Judges of the next wave) record:
// they look every ActivePoll. On a store whose watch pushes every write,
// the rest of the next wave looks every farPollFactor × ActivePoll (30 s
// by default), a node further behind every farthestPollFactor × (2 min):
// the wave_done that opens its wave wakes it, and the looks are for a
// verdict its judges failed to record, or a lost wake. With 10,000 nodes
// all looking every 5 s, the looks alone were 2,000 passes a second; with
// those behind looking every 30 s, still 700 (docs/scale.md).
func (c *Coordinator) activePoll(d reconciler.Decision) time.Duration {
	p, ok := c.opt.Shared.(Pusher)
	if !ok || !p.PushesChanges() || d.Rollout == nil {
		return c.opt.ActivePoll
	}
	switch {
	case d.Behind > 1 || ownWaveDone(d.Rollout, c.opt.Node):
		return farthestPollFactor * c.opt.ActivePoll
	case d.Behind == 1 && !judgesTheOpenWave(d.Rollout, c.opt.Node):
		return farPollFactor * c.opt.ActivePoll
	}
	return c.opt.ActivePoll
}

// ownWaveDone reports whether node's wave is recorded done in a rollout
// still in progress: nothing after that can change what it does but the
// rollout's end (a completed, failed or superseded event, which wakes it)
// or a rollback commit (the tracked branch moving). It judges no node (its
// judges come after it in the plan), and every wave_done, each a pass of
// every node upgraded before, was most of a 10,000-node run's passes: the
// nodes already done looked every ActivePoll, each read of the record
// bringing every node_done since (docs/scale.md).
func ownWaveDone(r *reconciler.Rollout, node string) bool {
	if r == nil || r.Ended() {
		return false
	}
	k := r.WaveOf(node)
	_, done := r.WaveDone[k]
	return k >= 0 && done
}

// judgesTheOpenWave reports whether node, of the wave after the open one,
// is among the first judges of the open wave's last nodes: the first
// reconciler.Judges places of its wave (reconciler/judges.go). Its other
// nodes judge those only once a verdict is a period late or more.
func judgesTheOpenWave(r *reconciler.Rollout, node string) bool {
	k := r.WaveOf(node)
	return k < 0 || slices.Index(r.Waves[k], node) < reconciler.Judges
}

// focus tells a Focuser whether lease changes of app matter to this node
// after decision d: only while it waits for a slot (all held, or its
// compare-and-swap for one lost). Any other wait (for its wave, for the
// rollout to end, a canary's monitor) only a record event or a timer
// ends, and a holder follows its own lease by renewing it: with every
// lease change waking every node, those were most of a rollout's passes
// (docs/scale.md).
//
// A node two or more waves behind (Decision.Behind) is woken by the
// wave_done of the wave before its own only (WaveFocuser): the waves
// before that open other nodes' waves, and its timer (6 × ActivePoll)
// covers the rest. A node done, in a wave done, by the rollout's end only
// (EndFocuser).
func (c *Coordinator) focus(app string, d reconciler.Decision) {
	c.leasesMatter(app, d.SlotWait || d.Action == reconciler.Acquire)
	if f, ok := c.opt.Shared.(EndFocuser); ok && ownWaveDone(d.Rollout, c.opt.Node) && hasDone(d.Rollout, c.opt.Node) {
		f.FocusEnd(app, d.Rollout.ID)
		return
	}
	if f, ok := c.opt.Shared.(WaveFocuser); ok {
		from, rollout := 0, ""
		switch {
		case ownWaveDone(d.Rollout, c.opt.Node):
			from, rollout = len(d.Rollout.Waves), d.Rollout.ID // no wave_done can change its decision
		case d.Behind > 1 && d.Rollout != nil:
			if k := d.Rollout.WaveOf(c.opt.Node); k > 0 {
				from, rollout = k-1, d.Rollout.ID
			}
		}
		f.FocusWaves(app, rollout, from)
	}
}

// leasesMatter tells a Focuser whether lease changes of app can change
// what this node does.
func (c *Coordinator) leasesMatter(app string, matter bool) {
	if f, ok := c.opt.Shared.(Focuser); ok {
		f.Focus(app, matter)
	}
}

// stale says why an Upgrade decision may no longer be acted on, or "".
// An observer may expire a lease TTL after it first saw the lease's token
// and record its holder failed, so this node acts only on shared state read
// less than a quarter of the TTL ago, and never on a lease it wrote whose
// validity on its own clock is within the skew margin (expired: renewing
// it would revive a lease that observers may have expired already; issue
// 12's chaos runs caught a holder stopped between taking its lease and
// renewing it that switched after it was recorded failed). A lease this
// handle did not write (held from before a restart) has no validity here
// (Shared.Validity is 0): the engine judged it on the fresh record.
func (c *Coordinator) stale(d reconciler.Decision, st *step) (why string, expired bool) {
	if v := c.opt.Shared.Validity(d.Lease); v != 0 && v <= c.opt.SkewMargin {
		return fmt.Sprintf("lease %s/%d is valid for %s on this node's clock, within the %s skew margin",
			d.Lease.App, d.Lease.Slot, v.Round(time.Millisecond), c.opt.SkewMargin), true
	}
	if age := c.opt.Clock.Since(st.read); age > c.opt.LeaseTTL/4 {
		return fmt.Sprintf("the shared state it rests on was read %s ago", age.Round(time.Millisecond)), false
	}
	return "", false
}

// IsTransient reports whether err is worth retrying with backoff: it wraps
// an error whose Transient method says so.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient() && !NeedsPerson(err)
}

func hasFailed(r *reconciler.Rollout, node string) bool { _, ok := r.Failed[node]; return ok }

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

// startAt says whether this node is still to wait before it starts the
// rollout of in's tip, and until when: the first time it finds the tip's
// rollout unstarted, a point of the start window (startWindow) that its
// name and the tip pick, the same on every pass.
func (c *Coordinator) startAt(ctx context.Context, in agent.DecideInput, rin reconciler.Input) (time.Time, bool) {
	if c.opt.StartJitter < 0 {
		return time.Time{}, false
	}
	key := settledKey(in)
	now := c.opt.Clock.Now()
	c.mu.Lock()
	st, ok := c.starts[in.App.Name]
	c.mu.Unlock()
	if !ok || st.key != key {
		window := c.startWindow(ctx, in, rin)
		h := fnv.New64a()
		h.Write([]byte(c.opt.Node + "@" + key))
		st = startTime{key: key, at: now.Add(time.Duration(h.Sum64() % uint64(window)))}
		c.mu.Lock()
		c.starts[in.App.Name] = st
		c.mu.Unlock()
	}
	return st.at, now.Before(st.at)
}

// startWindow is how long the nodes spread the start of a rollout over:
// StartJitter for every ten nodes of the fleet (at least StartJitter). The
// first of n nodes then starts about StartJitter/10 after the push, the
// next ones about as far apart, whatever n: only those whose turn comes
// before the first node's started is read also read the node reports. With
// one StartJitter for any fleet, each of 10,000 nodes read the 10,000
// reports to start a rollout only one could (docs/scale.md). The fleet's
// size is the plan of the app's last rollout, the nodes the spec declares,
// or, for an app's first rollout, the count of node reports when the store
// counts them without reading them (ReportCounter).
func (c *Coordinator) startWindow(ctx context.Context, in agent.DecideInput, rin reconciler.Input) time.Duration {
	n := len(in.Fleet.Nodes)
	if r := rin.Folded; r != nil {
		n = max(n, r.PlannedCount())
	} else if rc, ok := c.opt.Shared.(ReportCounter); ok {
		count, err := rc.CountReports(ctx)
		if err != nil {
			// The declared nodes only: a start herd costs reads, not safety.
			c.log.Debug("node reports not counted; spreading the start over the declared nodes", "app", in.App.Name, "err", err)
		}
		n = max(n, count)
	}
	return c.opt.StartJitter * time.Duration(max(1, n/10))
}

// takeFold hands a pass the app's kept fold (a new one when another pass
// holds it); putFold keeps it for the next pass. The Rollout a fold returns
// is extended in place, so one pass at a time owns it.
func (c *Coordinator) takeFold(app string) *reconciler.Folding {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.folds[app]
	delete(c.folds, app)
	if f == nil {
		f = &reconciler.Folding{}
	}
	return f
}

func (c *Coordinator) putFold(app string, f *reconciler.Folding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.folds[app] = f
}

// input gathers the engine's input for one app.
func (c *Coordinator) input(ctx context.Context, in agent.DecideInput, reports map[string]reconciler.NodeReport, fold *reconciler.Folding) (reconciler.Input, error) {
	app := in.App.Name
	rctx := ctx
	if s, ok := c.opt.Shared.(Snapshotter); ok {
		var err error
		if rctx, err = s.Snapshot(ctx, app); err != nil {
			return reconciler.Input{}, err
		}
	}
	record, err := c.opt.Shared.Record(rctx, app)
	if err != nil {
		return reconciler.Input{}, fmt.Errorf("read rollout record of %s: %w", app, err)
	}
	r := fold.Latest(record)
	leases, err := c.leasesFor(rctx, app, r)
	if err != nil {
		return reconciler.Input{}, fmt.Errorf("read leases of %s: %w", app, err)
	}
	now := c.opt.Clock.Now()
	var descends func(string) bool
	if c.opt.Descends != nil {
		tip := in.Commit.String()
		descends = func(ancestor string) bool { return ancestor == tip || c.opt.Descends(tip, ancestor) }
	}
	return reconciler.Input{
		Node: c.opt.Node, App: in.App, Tip: in.Commit.String(), Targeted: true, Descends: descends,
		Self:      self(in),
		Inventory: reconciler.InventoryOf(in.Fleet.Nodes, reports),
		Reports:   reports, Record: record, Folded: r, Seen: c.observe(app, len(record), now),
		Leases: leases, Now: now, Rollback: in.Rollback, Approvals: c.approvalsOf(in.Commit.String(), app, r),
	}, nil
}

// hasDone reports whether r records node done.
func hasDone(r *reconciler.Rollout, node string) bool {
	_, ok := r.Done[node]
	return ok
}

// leaseRead is an app's leases as read at a time, in a rollout.
type leaseRead struct {
	at      time.Time
	rollout string
	leases  []reconciler.Lease
}

// leasesFor reads app's leases for a pass, unless this node only waits:
// a node of the next wave, or recorded done in the open wave, reuses a
// read less than a lease TTL old; one two or more waves behind, or done in
// a wave that is done, its last read in the rollout. Such a node only
// waits (or monitors), and the leases matter to it only for verdicts on
// other nodes, which the nodes of the open wave decide on leases read at
// each pass, and their judges (reconciler.Judges: the nodes after them in
// the plan, of the open wave or the next) on leases at most a TTL old: a
// judge that kept a read for the rollout never saw a silent holder's lease
// age, and a 10,000-node run waited for the fallback to every node (docs/scale.md). A
// verdict it decides on an older read is safe: appendEvent reads the
// leases again, decides again on them, and appends guarded by their
// tokens; and a lease looks unchanged for no longer than it did when read.
// With 10,000 nodes, the 9,000 waiting read the 1,000 slots of the open
// wave at every pass: most of the etcd server's work (docs/scale.md).
func (c *Coordinator) leasesFor(ctx context.Context, app string, r *reconciler.Rollout) ([]reconciler.Lease, error) {
	now := c.opt.Clock.Now()
	behind := 0
	if r != nil && !r.Ended() {
		behind = r.WaveOf(c.opt.Node) - r.WavesDone()
	}
	c.mu.Lock()
	kept, ok := c.leaseReads[app]
	c.mu.Unlock()
	done := r != nil && hasDone(r, c.opt.Node)
	reuse := false
	switch {
	case !ok || r == nil || kept.rollout != r.ID:
	case behind > 1, done && (behind < 0 || r.Ended()):
		reuse = true // for the rollout
	case behind == 1, done:
		reuse = now.Sub(kept.at) < c.opt.LeaseTTL // a judge of the open wave
	}
	if reuse {
		return kept.leases, nil
	}
	leases, err := c.opt.Shared.Leases(ctx, app)
	if err != nil {
		return nil, err
	}
	c.keepLeases(app, r, now, leases)
	return leases, nil
}

// keepLeases keeps a read of app's leases made at now in rollout r, for
// leasesFor.
func (c *Coordinator) keepLeases(app string, r *reconciler.Rollout, now time.Time, leases []reconciler.Lease) {
	read := leaseRead{at: now, leases: leases}
	if r != nil {
		read.rollout = r.ID
	}
	c.mu.Lock()
	c.leaseReads[app] = read
	c.mu.Unlock()
}

// approvalsOf is the approval commits at tip for app's rollout in progress
// while it waits at an approval gate (nil otherwise), read once per tip. A
// history that cannot be read approves nothing: the gate stays shut
// (logged), which is the safe side.
func (c *Coordinator) approvalsOf(tip, app string, r *reconciler.Rollout) []reconciler.Approval {
	if c.opt.Approvals == nil || r == nil || r.Ended() || r.NextGate() < 0 {
		return nil
	}
	key := tip + "@" + r.ID
	c.mu.Lock()
	at, ok := c.approvals[app]
	c.mu.Unlock()
	if ok && at.key == key {
		return at.list
	}
	list, err := c.opt.Approvals(tip, app, r.ID)
	if err != nil {
		c.log.Warn("read the approval commits of a rollout: none counted", "app", app, "rollout", r.ID, "err", err)
		return nil
	}
	c.mu.Lock()
	c.approvals[app] = approvalsAt{key: key, list: list}
	c.mu.Unlock()
	return list
}

// observe extends an app's first-seen times to n events, stamping the new
// ones with now, and returns them (a value: later extensions never change
// it).
func (c *Coordinator) observe(app string, n int, now time.Time) reconciler.SeenTimes {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen[app]
	if n < s.Len() { // the record was replaced: start over
		s = reconciler.SeenTimes{}
	}
	s = s.Extend(n, now)
	c.seen[app] = s
	return s
}

// self is this node's own state for the engine.
func self(in agent.DecideInput) reconciler.AppReport {
	r := reconciler.AppReport{Version: in.Local.Active, State: reconciler.AppHealthy}
	switch {
	case in.Local.Active == "":
		r.State = reconciler.AppStopped
	case in.Local.Failed == in.App.Version:
		r.State = reconciler.AppFailed
	case in.Local.Watching:
		// Switched, its metric gates not watched to the end: not done
		// until they are (it takes a lease and resumes the watch).
		r.State = reconciler.AppSwitching
	}
	return r
}

// appendEvent appends the decided event by compare-and-swap, re-deciding
// on the current record when another writer got there first. A verdict on
// another node (unreachable, failed for taking no lease, lost, held) rests
// on the leases as much as on the record: it is decided on leases read now
// and appended only if none of the app's slots moved since that read, in
// the same transaction (AppendGuarded): a node that takes a lease between
// the read and the append is never recorded as having taken none (issue
// 17 bug 2's first half). When a slot moved, nothing is written and the
// next step decides afresh.
//
// A lost race re-decides on the record grown by what won, folding only
// those events (fold): with a hundred nodes of a wave recording node_done
// at once, folding the whole record at every loss was a pass's work each
// time.
func (c *Coordinator) appendEvent(ctx context.Context, rin reconciler.Input, d reconciler.Decision, fold *reconciler.Folding) error {
	app := rin.App.Name
	// wrote is the event of decide's last call: the one appended when
	// Append returns nil (nil: another writer recorded it, or it is moot;
	// with a hundred nodes deciding the same wave_done, only one logs it).
	var wrote *reconciler.Event
	decide := func(cur []reconciler.Event) (*reconciler.Event, error) {
		rin.Record, rin.Folded, rin.Seen = cur, fold.Latest(cur), c.observe(app, len(cur), rin.Now)
		again := reconciler.Decide(rin)
		if again.Action != reconciler.Append || again.Event.Type != d.Event.Type {
			wrote = nil
			return nil, nil // someone else recorded it, or it is moot now
		}
		wrote = again.Event
		return again.Event, nil
	}
	e := d.Event
	if !c.verdictOnOther(e) {
		if err := c.opt.Shared.Append(ctx, app, decide); err != nil {
			return fmt.Errorf("append %s to the rollout record of %s: %w", e.Type, app, err)
		}
		c.logAppended(app, wrote)
		return nil
	}
	read := c.opt.Clock.Now()
	leases, err := c.opt.Shared.Leases(ctx, app)
	if err != nil {
		return fmt.Errorf("read leases of %s before recording %s of %s: %w", app, e.Type, e.Node, err)
	}
	// The kept read (leasesFor) showed the verdict due; this one decides:
	// keep it, or a node whose wave is done finds the same stale verdict
	// due, and reads the leases again, at every pass.
	c.keepLeases(app, d.Rollout, read, leases)
	rin.Leases = leases
	err = c.opt.Shared.AppendGuarded(ctx, app, leaseGuard(app, leases, slotBound(rin.App, d.Rollout)), decide)
	if errors.Is(err, fleetrepo.ErrGuardMoved) {
		c.log.Debug("verdict not recorded: a lease slot moved since it was read; deciding again", "app", app, "event", e.Summary(), "err", err)
		c.mu.Lock()
		delete(c.leaseReads, app) // the next pass reads them afresh (leasesFor)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("append %s to the rollout record of %s: %w", e.Type, app, err)
	}
	c.logAppended(app, wrote)
	return nil
}

// logAppended logs the event this node appended (none: nothing).
func (c *Coordinator) logAppended(app string, e *reconciler.Event) {
	if e != nil {
		c.log.Info("rollout event", "app", app, "event", e.Summary())
	}
}

// verdictOnOther reports whether e is a verdict on another node decided
// from what the leases show (or do not show) of it.
func (c *Coordinator) verdictOnOther(e *reconciler.Event) bool {
	if e.Node == "" || e.Node == c.opt.Node {
		return false
	}
	switch e.Type {
	case reconciler.EventNodeUnreachable, reconciler.EventNodeFailed, reconciler.EventNodeLost, reconciler.EventNodeHeld:
		return true
	}
	return false
}

// slotBound is how many slots a node of rollout r may take a lease in: the
// recorded batch size (the spec's when none is recorded), or the largest
// wave for all_at_once (reconciler's slot count).
func slotBound(app spec.App, r *reconciler.Rollout) int {
	n := app.Rollout.BatchSize
	if r == nil {
		return n
	}
	if r.Options.BatchSize > 0 {
		n = r.Options.BatchSize
	}
	if app.Rollout.Strategy == spec.StrategyAllAtOnce {
		for _, w := range r.Waves {
			n = max(n, len(w))
		}
	}
	return n
}

// leaseGuard is the precondition of a verdict: every slot read, at the
// token read, and every slot below n that was never written, still
// unwritten (a node taking its first lease in it would be a lease taken).
func leaseGuard(app string, leases []reconciler.Lease, n int) []reconciler.Lease {
	bySlot := map[int]bool{}
	var g []reconciler.Lease
	for _, l := range leases {
		bySlot[l.Slot] = true
		g = append(g, reconciler.Lease{App: app, Slot: l.Slot, Token: l.Token})
	}
	for s := range n {
		if !bySlot[s] {
			g = append(g, reconciler.Lease{App: app, Slot: s})
		}
	}
	return g
}

func waiting(d reconciler.Decision, why string, until time.Time) agent.Permit {
	return agent.Permit{Waiting: why, Recheck: until, Rollout: rolloutID(d)}
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
