package reconciler

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// Action is what a node should do next for one app.
type Action int

// Actions, in the order an agent typically meets them.
const (
	// Wait: nothing to do now; decide again on the next change or at Until.
	Wait Action = iota
	// Append: append Event to the app's rollout record (compare-and-swap),
	// then decide again.
	Append
	// Acquire: try to take lease slot Slot, then decide again.
	Acquire
	// Upgrade: switch to Version under Lease, renewing it meanwhile; then
	// append node_done (or node_failed) and release the lease.
	Upgrade
	// Converge: switch to Version now, without waves or a lease (a rollback).
	Converge
	// Monitor: the canary keeps checking its health every retryDelay until
	// Until; a failure is appended as node_failed.
	Monitor
	// Rollback: write the rollback commit restoring Version (the rollout's
	// From) on the tracked branch, then append rolled_back.
	Rollback
)

func (a Action) String() string {
	names := [...]string{"wait", "append", "acquire", "upgrade", "converge", "monitor", "rollback"}
	if a >= 0 && int(a) < len(names) {
		return names[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Input is everything a node knows when it decides about one app. Decide
// does no I/O: the agent gathers Input and carries out the Decision.
type Input struct {
	Node     string    // this node
	App      spec.App  // the app's spec at the tip of the tracked branch
	Tip      string    // that tip's commit id: the id of a rollout started now
	Targeted bool      // whether App targets this node
	Self     AppReport // this node's own state for the app
	// From is the version before the change, when the caller knows it (the
	// app's version in the tip's parent); empty lets Decide infer it.
	From string
	// Inventory is every node known (declared and reported), for a new plan.
	Inventory []NodeInfo
	// Reports are the nodes' latest reports (for inferring From).
	Reports map[string]NodeReport
	Record  []Event
	// Folded is Latest(Record) when the caller keeps it folded as the
	// record grows (a Folding); nil: Decide folds Record itself.
	Folded *Rollout
	// Seen says when this node first saw each event of Record, on its own
	// clock.
	Seen   SeenTimes
	Leases []Lease
	Now    time.Time
	// Descends reports whether Tip descends from (or is) a commit of the
	// tracked branch; false for a commit it does not know (a tip older than
	// it). Nil: every tip descends (tests of the pure engine).
	Descends func(commit string) bool
	// Rollback is set when the tip's commit is a rollback of this app (its
	// trailers, or a git revert of an upgrade commit): a rollout it starts
	// applies at once, unless the mark asks for waves.
	Rollback *RollbackMark
	// Approvals are the approval commits between the rollout's commit and
	// the tip (reconciler promote), oldest first; those of other rollouts
	// are ignored.
	Approvals []Approval
}

// descends reports whether the tip may act on what commit decided: it is
// that commit or a descendant.
func (in Input) descends(commit string) bool {
	return commit == "" || commit == in.Tip || in.Descends == nil || in.Descends(commit)
}

// Decision is what to do next, and why.
type Decision struct {
	Action  Action
	Event   *Event    // Append
	Slot    int       // Acquire
	Lease   Lease     // Upgrade: the lease held
	Version string    // Upgrade, Converge, Rollback
	Until   time.Time // Wait, Monitor: decide again no later than this (zero: on change)
	// Behind, on a Wait for this node's wave to open, is how many waves
	// are to open before it does (1: its own is next); 0 on any other
	// decision. Such a wait ends on a record event (a wave done, an
	// approval, a resume, a replan) or at Until, never on a lease moving.
	Behind int
	// SlotWait marks the Wait for a lease slot to free: the only wait a
	// lease moving can end.
	SlotWait bool
	Reason   string   // for logs and status
	Rollout  *Rollout // the rollout decided about, nil when none
}

// Decide returns this node's next step for one app. It is a pure function of
// its input, so every rule of docs/design.md (the lease protocol) is table-tested.
func Decide(in Input) Decision {
	r := in.Folded
	if r == nil {
		r = Latest(in.Record)
	}
	if r == nil || r.Target != in.App.Version || r.Outcome == OutcomeSuperseded || retargeted(in, r) {
		return decideNewTarget(in, r)
	}
	d := decideCurrent(in, r)
	d.Rollout = r
	return d
}

// retargeted reports whether the tip names again the target of a rollout
// that was rolled back, in a commit after the rollback commit: a person
// asked for that version anew, which is a new rollout, not the old one
// (fleetsim chaos 759: a rollback restored 1.1.0 away from 1.0.0, a person
// committed 1.0.0 again, and every node waited for a rollback commit that
// had long landed).
func retargeted(in Input, r *Rollout) bool {
	return r.Outcome == OutcomeRolledBack && r.Rollback != "" && in.Tip != r.ID && in.Tip != r.Rollback &&
		in.Descends != nil && in.Descends(r.Rollback)
}

// decideNewTarget handles a tip whose version is not the latest rollout's.
func decideNewTarget(in Input, r *Rollout) Decision {
	target := in.App.Version
	if r != nil && !in.descends(r.SpecAt) {
		// This node's tip is older than the one that started (or last
		// steered) the rollout: it must not supersede it (issue 17, bug 4).
		return Decision{Action: Wait, Reason: "the rollout in the record is of a newer commit than this node's tip; waiting for it", Rollout: r}
	}
	if r != nil && !r.Ended() {
		return appendEvent(in, r, Event{Type: EventSuperseded, Reason: "new target " + target})
	}
	if r != nil && (r.Outcome == OutcomeFailed || r.Outcome == OutcomeRolledBack) && target == r.From {
		// Back to From after a failed rollout (the rollback commit, or a
		// person's): at once, without waves or leases; the failed
		// rollout's record already says rolled_back.
		if why, held := in.heldFrom(target, true); held {
			return Decision{Action: Wait, Reason: why, Rollout: r}
		}
		d := converge(in, target)
		d.Rollout = r
		return d
	}
	plan := PlanWaves(in.App, in.Inventory)
	if in.Rollback != nil {
		plan = PlanRollback(in.App, in.Inventory)
	}
	opts := flagsOf(in.App)
	e := &Event{Type: EventStarted, Rollout: in.Tip, By: in.Node, Time: in.Now,
		Target: target, From: inferFrom(in, r), Waves: plan.Waves, Stages: plan.Stages, Options: &opts}
	reason := "start rollout of " + target
	if in.Rollback != nil {
		e.Rollback, e.RollbackOf = true, in.Rollback.Of
		if r != nil && (e.From == "" || e.From == target) {
			e.From = r.Target // the version rolled back from
		}
		reason = "start rollback to " + target + " in waves"
		if !in.Rollback.Waves {
			// A rollback applies at once: one wave of every targeted
			// node, no leases, no batchDelay.
			e.AtOnce, e.Waves, e.Stages = true, nil, nil // and no stages
			if all := planned(&Rollout{Waves: plan.Waves}); len(all) > 0 {
				e.Waves = [][]string{all}
			}
			reason = "start rollback to " + target + " at once"
		}
	}
	return Decision{Action: Append, Reason: reason, Event: e}
}

// decideCurrent handles the rollout of the tip's version.
func decideCurrent(in Input, r *Rollout) Decision {
	if r.Ended() {
		return decideEnded(in, r)
	}
	if d, ok := bookkeeping(in, r); ok {
		return d
	}
	return decideSelf(in, r)
}

func decideEnded(in Input, r *Rollout) Decision {
	switch r.Outcome {
	case OutcomeFailed:
		if r.IsRollback {
			// Never roll a rollback back: that re-applies what failed.
			return Decision{Action: Wait, Reason: fmt.Sprintf("rollback to %s failed on %s: %s; not rolling a rollback back", r.Target, r.FailedBy, r.Reason)}
		}
		if in.App.Rollout.RollbackOnFail && r.From != "" {
			return Decision{Action: Rollback, Version: r.From,
				Reason: fmt.Sprintf("rollout of %s failed on %s: %s", r.Target, r.FailedBy, r.Reason)}
		}
		if retriesFirstInstall(in, r) {
			return leaseOrWait(in, r)
		}
		return Decision{Action: Wait, Reason: "rollout failed; no previous version to roll back to"}
	case OutcomeRolledBack:
		return Decision{Action: Wait, Reason: "rolled back; waiting for the rollback commit"}
	}
	// Completed: late joiners and skipped nodes converge under a lease;
	// a node that failed the target does not retry it (bug 5).
	switch {
	case !in.Targeted || upToDate(in):
		return Decision{Action: Wait, Reason: "up to date"}
	case retriesFirstInstall(in, r):
	case hasKey(r.Failed, in.Node) || in.Self.State == AppFailed:
		return Decision{Action: Wait, Reason: "failed to upgrade to " + r.Target + "; not retried until the target changes"}
	}
	if why, held := in.heldFrom(r.Target, r.IsRollback); held {
		return Decision{Action: Wait, Reason: why}
	}
	if r.AtOnce {
		return converge(in, r.Target)
	}
	if d, closed := gateClosed(in, r); closed {
		return d
	}
	return leaseOrWait(in, r)
}

// gateClosed is the wait of a node that may not take a lease now: its
// rollout's maintenance windows are closed, or a freeze is on, by this
// node's clock. A rollback ignores both.
func gateClosed(in Input, r *Rollout) (Decision, bool) {
	if r.IsRollback || holdsLease(in.Leases, r.ID, in.Node) {
		return Decision{}, false
	}
	g := GateAt(in.App.Rollout, in.Now)
	if g.Open {
		return Decision{}, false
	}
	return Decision{Action: Wait, Until: g.Next, Reason: "no switch starts now: " + g.closedText(in.Now)}, true
}

// retriesFirstInstall reports whether this node, recorded failed in an
// ended rollout, tries the target again under a lease: it runs nothing (a
// failed first install has no previous version to keep serving, so waiting
// for a person helps no one) and its agent's backoff has run out (the agent
// no longer reports the failure: docs/agent.md, "A failed first install").
func retriesFirstInstall(in Input, r *Rollout) bool {
	return in.Targeted && hasKey(r.Failed, in.Node) && in.Self.Version == "" && in.Self.State != AppFailed && !r.AtOnce
}

// MaxLeaseLosses is how many times a node's lease may expire without a
// verdict (node_lost) in one rollout before the node is skipped as
// unreachable (failed with onUnreachable: "fail"): a node starved over and
// over does not hold the rollout for ever, nor fail it.
const MaxLeaseLosses = 3

// bookkeeping returns the record entry this node should append, if any:
// pauses, timeouts, expired leases, failures, finished waves, completion.
// Whoever notices first writes it; the compare-and-swap keeps it single.
func bookkeeping(in Input, r *Rollout) (Decision, bool) {
	// Pause and options follow the spec only from a tip at least as new as
	// the one that last set them: a stale tip would flap them (bug 4).
	fresh := in.descends(r.SpecAt)
	if fresh && in.App.Paused != r.Paused {
		t := EventResumed
		if in.App.Paused {
			t = EventPaused
		}
		return appendEvent(in, r, Event{Type: t, Spec: in.Tip}), true
	}
	if opts := flagsOf(in.App); fresh && opts != r.Options {
		e := replan(in.App, r, opts)
		e.Spec = in.Tip
		return appendEvent(in, r, e), true
	}
	if e, ok := approval(in, r); ok {
		return appendEvent(in, r, e), true
	}
	judge := judgingOf(in, r)
	for _, l := range in.Leases {
		// An expired holder with no done or failed verdict went silent
		// (starved, stopped, cut off): that is recorded, not as a failure
		// of the version, and its slot is freed only after that, even when
		// it was recorded unreachable meanwhile (bug 2). A failure is only
		// what a holder reports (docs/rollouts.md, "Slow is not failed").
		// Its judges record it when the lease expires, four times as
		// many each TTL more (judges.go).
		// Cheapest first: awaitsVerdict walks the plan, judgesNode again.
		if l.Rollout == r.ID && l.Expired() && !r.LostToken(l.Holder, l.Token) && awaitsVerdict(r, l.Holder) &&
			judge.judgesNode(l.Holder, judgesFor(l.Unchanged-l.TTL, l.TTL)) {
			return appendEvent(in, r, Event{Type: EventNodeLost, Node: l.Holder, Lease: l.Token,
				Reason: fmt.Sprintf("lease %s/%d expired: holder went silent for %s (starved, stopped or cut off), no failure reported; loss %d of %d before it is skipped",
					l.App, l.Slot, l.TTL, len(r.Lost[l.Holder])+1, MaxLeaseLosses)}), true
		}
	}
	for _, n := range lostTooOften(r) {
		if !r.terminal(n) && !holdsLease(in.Leases, r.ID, n) {
			reason := fmt.Sprintf("lost its lease %d times without reporting a failure", len(r.Lost[n]))
			if in.App.Rollout.OnUnreachable == spec.OnUnreachableFail {
				return appendEvent(in, r, Event{Type: EventNodeFailed, Node: n, Reason: reason}), true
			}
			return appendEvent(in, r, Event{Type: EventNodeUnreachable, Node: n, Reason: reason}), true
		}
	}
	held := in.heldNodes(r)
	if e, ok := heldInPlan(in, r, held); ok && fresh {
		return appendEvent(in, r, e), true
	}
	if e, ok := overBudget(in, r); ok {
		return appendEvent(in, r, e), true
	}
	if k, ok := nextWaveDone(in, r); ok {
		return appendEvent(in, r, Event{Type: EventWaveDone, Wave: k}), true
	}
	if len(r.WaveDone) >= len(r.Waves) {
		return appendEvent(in, r, Event{Type: EventCompleted, Result: r.Result()}), true
	}
	if e, ok := unreachable(in, r, held); ok {
		return appendEvent(in, r, e), true
	}
	return Decision{}, false
}

// overBudget is the failed event of a rollout that has more failed nodes
// in its plan than rollout.maxFailures allows, naming the first failure
// past the budget. Up to the budget, a failed node (rolled back locally by
// its driver) is skipped and the rollout goes on. Only with rollbackOnFail:
// without it, failures never fail the rollout; an at-once rollback goes on
// past any failure (the others must get back too).
func overBudget(in Input, r *Rollout) (Event, bool) {
	if !in.App.Rollout.RollbackOnFail || r.AtOnce {
		return Event{}, false
	}
	failed := r.failedInPlan()
	allowed := in.App.Rollout.MaxFailures.Of(r.PlannedCount())
	if len(failed) <= allowed {
		return Event{}, false
	}
	n := failed[allowed]
	reason := r.Failed[n]
	if allowed > 0 {
		reason = fmt.Sprintf("%d nodes failed, more than maxFailures %s allows (%d): %s", len(failed), in.App.Rollout.MaxFailures, allowed, reason)
	}
	return Event{Type: EventFailed, Node: n, Reason: reason}, true
}

// stopsOnFailure reports whether a failed node holds its wave: when one
// more failure fails the rollout (rollbackOnFail, the budget spent) the
// rollout is failed instead of going on.
func stopsOnFailure(in Input, r *Rollout) bool {
	if !in.App.Rollout.RollbackOnFail || r.AtOnce {
		return false
	}
	return len(r.failedInPlan()) > in.App.Rollout.MaxFailures.Of(r.PlannedCount())
}

// nextWaveDone finds the first wave not yet recorded done whose nodes all
// have a verdict.
func nextWaveDone(in Input, r *Rollout) (int, bool) {
	for k := range r.Waves {
		if _, done := r.WaveDone[k]; done {
			continue
		}
		// A gated wave is not done before it is approved, even when
		// none of its nodes had to switch (all held, or already there):
		// the waves after it wait behind the same gate.
		return k, r.WaveComplete(k, stopsOnFailure(in, r)) && !r.awaitsApproval(k)
	}
	return 0, false
}

// unreachable finds a node of an open wave that has not taken a lease within
// nodeTimeout of the wave opening (on this observer's clock).
func unreachable(in Input, r *Rollout, held map[string]string) (Event, bool) {
	if r.Paused {
		return Event{}, false
	}
	k := openWave(in, r)
	if k < 0 {
		return Event{}, false
	}
	at, _ := openAt(in, r, k)
	if !r.IsRollback {
		// A node is given nodeTimeout while the gate is open: no lease is
		// taken while it is closed, so none is late for it.
		g := GateAt(in.App.Rollout, in.Now)
		if !g.Open {
			return Event{}, false
		}
		at = maxTime(at, g.Since)
	}
	late := in.Now.Sub(at)
	if late < in.App.Rollout.NodeTimeout.Duration {
		return Event{}, false
	}
	// Its judges record a node that took no lease after nodeTimeout,
	// four times as many each nodeTimeout more (judges.go).
	w := judgesFor(late-in.App.Rollout.NodeTimeout.Duration, in.App.Rollout.NodeTimeout.Duration)
	judge := judgingOf(in, r)
	start := r.waveStart(k)
	var holders map[string]bool // read only for a node this one judges
	for i, n := range r.Waves[k] {
		// Whether this node judges n first: it judges a few of the open
		// wave's nodes, and the verdict and lease lookups for each of a
		// wave of 1,000 at every pass were a twentieth of a 10,000-node
		// run's CPU (docs/scale.md).
		if !judge.judges(start+i, w) || r.terminal(n) {
			continue
		}
		if holders == nil {
			holders = liveHolders(in.Leases, r.ID)
		}
		if holders[n] {
			continue
		}
		if _, ok := held[n]; ok {
			continue // heldInPlan records it
		}
		if i, lost := r.LostAt[n]; lost && seenWithin(in, i, in.App.Rollout.NodeTimeout.Duration) {
			continue // retried after a lost lease: nodeTimeout runs from the loss
		}
		reason := fmt.Sprintf("took no lease within nodeTimeout %s of %s opening", in.App.Rollout.NodeTimeout, WaveName(k))
		if in.App.Rollout.OnUnreachable == spec.OnUnreachableFail {
			return Event{Type: EventNodeFailed, Node: n, Reason: reason}, true
		}
		return Event{Type: EventNodeUnreachable, Node: n, Reason: reason}, true
	}
	return Event{}, false
}

// heldInPlan finds a node of the plan without a verdict that the inventory
// now holds (or pins elsewhere), not in flight: it is recorded node_held, so
// its wave does not wait for it and it is never counted unreachable. A hold
// declared before the rollout started keeps the node out of the plan.
func heldInPlan(in Input, r *Rollout, held map[string]string) (Event, bool) {
	if len(held) == 0 {
		return Event{}, false
	}
	holders := liveHolders(in.Leases, r.ID)
	for _, n := range planned(r) {
		if why, ok := held[n]; ok && !r.terminal(n) && !holders[n] {
			return Event{Type: EventNodeHeld, Node: n, Reason: why}, true
		}
	}
	return Event{}, false
}

// heldNodes maps each inventory node held from the rollout to why.
func (in Input) heldNodes(r *Rollout) map[string]string {
	var out map[string]string
	for i := range in.Inventory {
		n := &in.Inventory[i] // not a copy of each of 10,000 nodes at every pass
		if !n.Hold && len(n.Pin) == 0 {
			continue
		}
		if why, held := n.HeldFrom(in.App.Name, r.Target, r.IsRollback); held {
			if out == nil {
				out = map[string]string{}
			}
			out[n.Name] = why
		}
	}
	return out
}

// held reports whether the inventory holds this node from the rollout.
func (in Input) held(r *Rollout) bool {
	_, h := in.heldFrom(r.Target, r.IsRollback)
	return h
}

// heldFrom says why this node may not move to version, by the inventory.
func (in Input) heldFrom(version string, rollback bool) (string, bool) {
	for _, n := range in.Inventory {
		if n.Name == in.Node {
			return n.HeldFrom(in.App.Name, version, rollback)
		}
	}
	return "", false
}

// decideSelf is this node's own part in a rollout in progress.
func decideSelf(in Input, r *Rollout) Decision {
	if r.AtOnce {
		return decideAtOnce(in, r)
	}
	k := r.WaveOf(in.Node)
	switch {
	case !in.Targeted:
		return Decision{Action: Wait, Reason: "not targeted"}
	case !holdsLease(in.Leases, r.ID, in.Node) && !hasKey(r.Done, in.Node) && in.held(r):
		why, _ := in.heldFrom(r.Target, r.IsRollback)
		return Decision{Action: Wait, Reason: why}
	case k < 0:
		return Decision{Action: Wait, Reason: "joined after the plan was frozen; converges when the rollout ends"}
	case hasKey(r.Done, in.Node):
		return monitorOrWait(in, r, k)
	case r.terminal(in.Node):
		return Decision{Action: Wait, Reason: "has a verdict in this rollout"}
	case in.Self.State == AppFailed:
		return appendEvent(in, r, Event{Type: EventNodeFailed, Node: in.Node, Reason: "the switch to " + r.Target + " failed on this node"})
	case holdsLease(in.Leases, r.ID, in.Node):
		return leaseOrWait(in, r) // in flight: finishes even when paused
	case len(r.Lost[in.Node]) >= MaxLeaseLosses:
		return Decision{Action: Wait, Reason: fmt.Sprintf("lost its lease %d times; to be skipped", len(r.Lost[in.Node]))}
	case r.Paused:
		return Decision{Action: Wait, Reason: "rollout paused"}
	}
	at, known := openAt(in, r, k)
	if !known {
		if _, prevDone := r.WaveDone[k-1]; prevDone && r.awaitsApproval(k) {
			return Decision{Action: Wait, Behind: 1, Reason: ApprovalWait(in.App.Name, k)}
		}
		return Decision{Action: Wait, Behind: max(1, k-r.WavesDone()), Reason: fmt.Sprintf("%s waits for earlier waves", WaveName(k))}
	}
	if in.Now.Before(at) {
		return Decision{Action: Wait, Until: at, Behind: 1, Reason: r.opensText(k, at.Sub(in.Now).Round(time.Millisecond))}
	}
	if upToDate(in) {
		return appendEvent(in, r, Event{Type: EventNodeDone, Node: in.Node, Reason: "already on target"})
	}
	if d, closed := gateClosed(in, r); closed {
		return d
	}
	return leaseOrWait(in, r)
}

// decideAtOnce is this node's part in an at-once rollback: converge now,
// whatever the waves, leases, batchDelay or a pause say, then record the
// verdict (nodes outside the plan converge and record nothing).
func decideAtOnce(in Input, r *Rollout) Decision {
	inPlan := r.WaveOf(in.Node) >= 0
	switch {
	case !in.Targeted:
		return Decision{Action: Wait, Reason: "not targeted"}
	case inPlan && r.terminal(in.Node):
		return Decision{Action: Wait, Reason: "has a verdict in this rollback"}
	case inPlan && upToDate(in):
		return appendEvent(in, r, Event{Type: EventNodeDone, Node: in.Node, Reason: "rolled back to " + r.Target})
	case inPlan && in.Self.State == AppFailed:
		return appendEvent(in, r, Event{Type: EventNodeFailed, Node: in.Node, Reason: "switch to " + r.Target + " failed"})
	case in.Self.State == AppFailed:
		return Decision{Action: Wait, Reason: "failed to switch to " + r.Target + "; not retried until the target changes"}
	}
	if why, held := in.heldFrom(r.Target, true); held {
		return Decision{Action: Wait, Reason: why}
	}
	d := converge(in, r.Target)
	d.Rollout = r
	return d
}

// monitorOrWait keeps a canary checking its health until the next wave opens.
func monitorOrWait(in Input, r *Rollout, k int) Decision {
	if in.App.Rollout.Strategy != spec.StrategyCanary || k != 0 || len(r.Waves) < 2 {
		return Decision{Action: Wait, Reason: "upgraded; waiting for the rollout to finish"}
	}
	if at, known := openAt(in, r, 1); !known || in.Now.Before(at) {
		return Decision{Action: Monitor, Until: at, Version: r.Target, Reason: "canary monitor"}
	}
	return Decision{Action: Wait, Reason: "canary monitor passed"}
}

// leaseOrWait upgrades under the lease this node holds, or asks for a free slot.
func leaseOrWait(in Input, r *Rollout) Decision {
	for _, l := range in.Leases {
		if l.Holder == in.Node && l.Rollout == r.ID && !l.Expired() {
			return Decision{Action: Upgrade, Lease: l, Version: r.Target, Reason: "holds lease"}
		}
	}
	if slot, ok := freeSlot(in, r); ok {
		return Decision{Action: Acquire, Slot: slot, Version: r.Target, Reason: "wave open"}
	}
	return Decision{Action: Wait, SlotWait: true, Reason: fmt.Sprintf("all %d lease slots are held", slotCount(in.App, r))}
}

// slotCount is how many lease slots the app's rollout may hold at once:
// the batchSize the record holds (every agent counts the same, whatever
// its tip), or every node of the wave for all_at_once.
func slotCount(app spec.App, r *Rollout) int {
	n := r.Options.BatchSize
	if n <= 0 {
		n = app.Rollout.BatchSize
	}
	if app.Rollout.Strategy == spec.StrategyAllAtOnce {
		for _, w := range r.Waves {
			n = max(n, len(w))
		}
	}
	return n
}

// freeSlot returns a slot below the slot count that is free or whose
// expired holder can no longer count, provided fewer leases than that count
// are live in any slot: holders of slots above a lowered batchSize, and of
// a superseded rollout, still switch (bug 7).
func freeSlot(in Input, r *Rollout) (int, bool) {
	n := slotCount(in.App, r)
	bySlot := map[int]Lease{}
	live := 0
	for _, l := range in.Leases {
		bySlot[l.Slot] = l
		if l.Held() && !freeable(r, l) {
			live++
		}
	}
	if live >= n {
		return 0, false
	}
	first := firstSlot(r, in.Node, n)
	for i := range n {
		s := (first + i) % n
		if l, seen := bySlot[s]; !seen || !l.Held() || freeable(r, l) {
			return s, true
		}
	}
	return 0, false
}

// Overfull reports whether held, a lease just taken, is one more than the
// rollout allows on leases and a record read after taking it: its slot is
// at or above the slot count, or the other live holders fill the count. A
// node whose compare-and-swap rested on an older read (a lower batch size
// recorded meanwhile, another node's slot taken meanwhile) gives it up
// before installing anything; a holder that took its slot before the
// batch size was lowered still switches (bug 7), since only a node that
// has just taken its lease asks.
func Overfull(app spec.App, r *Rollout, leases []Lease, held Lease) bool {
	n := slotCount(app, r)
	if held.Slot >= n {
		return true
	}
	live := 0
	for _, l := range leases {
		if l.Token != held.Token && l.Held() && !freeable(r, l) {
			live++
		}
	}
	return live >= n
}

// firstSlot is the slot a node tries first: its place in its wave, modulo
// the slot count, so that the nodes of an opening wave each ask for a slot
// of their own. All starting from slot 0, they raced for the same
// compare-and-swap: one won, every other lost and tried again at its next
// pass, and a wave of 100 on etcd switched about 20 at a time (docs/scale.md).
// A node outside the plan starts from a slot its name picks.
func firstSlot(r *Rollout, node string, n int) int {
	if p, ok := r.placeOf(node); ok {
		return p.pos % n
	}
	h := fnv.New32a()
	h.Write([]byte(node))
	return int(h.Sum32() % uint32(n))
}

// freeable reports whether a held lease can be taken over: it expired on
// this observer's clock (so its holder's validity ended before) and no
// verdict on its holder is still to be recorded: the holder has one, is
// not in the plan (a late joiner, bug 6), or belongs to another rollout;
// or the rollout is over, so no verdict is recorded any more (a node
// recorded unreachable that died holding a lease after completion would
// otherwise keep its slot for good, fleetsim unreachable seeds 90, 175).
func freeable(r *Rollout, l Lease) bool {
	return l.Expired() && (l.Rollout != r.ID || r.Ended() || r.LostToken(l.Holder, l.Token) || !awaitsVerdict(r, l.Holder))
}

// awaitsVerdict reports whether node is in the plan without a done or
// failed verdict (unreachable does not count: it took a lease after all).
func awaitsVerdict(r *Rollout, node string) bool {
	// The maps first: WaveOf walks the plan (10,000 names, for each
	// expired slot at each pass: a sixth of a 10,000-node run's CPU).
	return !hasKey(r.Done, node) && !hasKey(r.Failed, node) && r.WaveOf(node) >= 0
}

// openWave returns the highest wave whose earlier waves are all done and
// whose opening time has passed, or -1.
func openWave(in Input, r *Rollout) int {
	open := -1
	for k := range r.Waves {
		at, known := openAt(in, r, k)
		if !known || in.Now.Before(at) {
			break
		}
		open = k
	}
	return open
}

// openAt is when wave k opens on this node's clock: wave 0 when the rollout
// was first seen; wave k once wave k-1 was seen done plus batchDelay (and the
// canary monitor after the canary wave; at a stage boundary the previous
// stage's bake instead of batchDelay). Resuming restarts the clock: the
// delay then counts from when this node saw resumed, not wave_done.
func openAt(in Input, r *Rollout, k int) (time.Time, bool) {
	// from is the later of the previous wave's end and the last resume:
	// resuming restarts the batchDelay (and the canary monitor).
	from := seen(in, r.Started)
	if k > 0 {
		i, done := r.WaveDone[k-1]
		if !done {
			return time.Time{}, false
		}
		from = seen(in, i)
	}
	if r.Resumed >= 0 {
		if res := seen(in, r.Resumed); res.After(from) {
			from = res
		}
	}
	if k == 0 {
		return from, true
	}
	at := from.Add(r.delayBefore(k, in.App.Rollout.BatchDelay.Duration)) // a stage's bake (stages.go)
	if k == 1 && in.App.Rollout.Strategy == spec.StrategyCanary {
		at = at.Add(in.App.Rollout.Canary.Monitor.Duration)
	}
	if r.Gated(k) {
		// An approval opens a gated wave when it arrives, once the delay
		// (and the canary monitor) ran out: an early approval does not
		// shorten them, a late one does not add a delay after it.
		i, ok := r.approvedAt(k)
		if !ok {
			return time.Time{}, false
		}
		at = maxTime(at, seen(in, i))
	}
	return at, true
}

// seen is when this node first saw event i (now, if it has not).
func seen(in Input, i int) time.Time {
	if at, ok := in.Seen.At(i); ok && !at.IsZero() {
		return at
	}
	return in.Now
}

// seenWithin reports whether this node saw event i less than d ago.
func seenWithin(in Input, i int, d time.Duration) bool {
	at, ok := in.Seen.At(i)
	return ok && in.Now.Sub(at) < d
}

// replan records new options. Waves not yet open (those after the one in
// progress) are re-chunked with the new batch size.
func replan(app spec.App, r *Rollout, opts RolloutFlags) Event {
	e := Event{Type: EventOptionsChanged, Options: &opts, Wave: -1}
	first := len(r.WaveDone) + 1
	if opts.BatchSize == r.Options.BatchSize || first >= len(r.Waves) || app.Rollout.Strategy == spec.StrategyAllAtOnce {
		return e
	}
	if len(r.Stages) > 0 {
		e.Wave = first
		e.Waves, e.Stages = replanStages(r, first, opts.BatchSize)
		return e
	}
	var rest []string
	for _, w := range r.Waves[first:] {
		rest = append(rest, w...)
	}
	e.Wave, e.Waves = first, chunks(rest, opts.BatchSize)
	return e
}

// inferFrom is the version the fleet ran before this target: the caller's
// answer, else what most nodes report, else what this node runs, else the
// last rollout's.
func inferFrom(in Input, r *Rollout) string {
	if in.From != "" && in.From != in.App.Version {
		return in.From
	}
	count := map[string]int{}
	best := ""
	for _, rep := range in.Reports {
		v := rep.Apps[in.App.Name].Version
		if v == "" || v == in.App.Version {
			continue
		}
		count[v]++
		if count[v] > count[best] || (count[v] == count[best] && v < best) {
			best = v
		}
	}
	if best != "" {
		return best
	}
	if v := in.Self.Version; v != "" && v != in.App.Version {
		return v // no reports yet: what this node runs
	}
	if r != nil {
		if r.Outcome == OutcomeCompleted || r.Outcome == OutcomeSuperseded {
			return r.Target
		}
		return r.From
	}
	return ""
}

func converge(in Input, version string) Decision {
	if !in.Targeted || upToDate(in) {
		return Decision{Action: Wait, Reason: "up to date"}
	}
	return Decision{Action: Converge, Version: version, Reason: "rollback applies at once"}
}

func appendEvent(in Input, r *Rollout, e Event) Decision {
	e.Rollout, e.By, e.Time = r.ID, in.Node, in.Now
	return Decision{Action: Append, Event: &e, Reason: e.Type, Rollout: r}
}

func upToDate(in Input) bool {
	return in.Self.Version == in.App.Version && in.Self.State == AppHealthy
}

func holdsLease(ls []Lease, rollout, node string) bool {
	for _, l := range ls {
		if l.Holder == node && l.Rollout == rollout && !l.Expired() {
			return true
		}
	}
	return false
}

// liveHolders is the set of nodes holding an unexpired lease of rollout.
func liveHolders(ls []Lease, rollout string) map[string]bool {
	out := map[string]bool{}
	for _, l := range ls {
		if l.Holder != "" && l.Rollout == rollout && !l.Expired() {
			out[l.Holder] = true
		}
	}
	return out
}

// lostTooOften lists the planned nodes whose leases were recorded lost
// MaxLeaseLosses times or more, in plan order. It walks the few lost nodes,
// not the plan: a walk of the plan at every pass, once a lease had been
// lost, was 7 % of a 10,000-node run's CPU (docs/scale.md).
func lostTooOften(r *Rollout) []string {
	var out []string
	pos := map[string]int{}
	for n, tokens := range r.Lost {
		if len(tokens) < MaxLeaseLosses {
			continue
		}
		if p := r.flatPos(n); p >= 0 {
			out, pos[n] = append(out, n), p
		}
	}
	slices.SortFunc(out, func(a, b string) int { return pos[a] - pos[b] })
	return out
}

func planned(r *Rollout) []string {
	var out []string
	for _, w := range r.Waves {
		out = append(out, w...)
	}
	return out
}

func flagsOf(app spec.App) RolloutFlags {
	f := RolloutFlags{BatchSize: app.Rollout.BatchSize, BatchDelay: app.Rollout.BatchDelay.Duration}
	if a := app.Rollout.Approve; a != spec.ApproveNone {
		f.Approve = a
	}
	return f
}
