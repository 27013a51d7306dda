package reconciler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// Rollout states shown by `reconciler status`.
const (
	StateProgressing = "progressing"
	StatePaused      = "paused"
	StateComplete    = "complete"
	StateFailed      = "failed"
	StateRolledBack  = "rolled_back"
	StateSuperseded  = "superseded"
	StateNone        = "none" // no rollout recorded yet
)

// Node states `status` shows besides the node reports' own (healthy,
// waiting, upgrading, switching, failed, unhealthy, stopped).
const (
	NodeUpgraded = "upgraded" // done in this rollout, running its target
	NodeFailed   = "failed"   // failed in this rollout and runs nothing healthy
	// NodeRolledBack: failed in this rollout, or upgraded in one that was
	// rolled back, and now runs an earlier version, healthy.
	NodeRolledBack = "rolled_back"
	NodeSkipped    = "skipped"     // unreachable within nodeTimeout
	NodeNotStarted = "not_started" // the rollout ended before this node's turn
	NodeUnknown    = "unknown"     // no report from this node
	NodeHeld       = "held"        // held, or pinned to another version, in the inventory
)

// Status is the rollout of one app now, as `reconciler status` shows it.
type Status struct {
	App     string `json:"app"`
	Target  string `json:"target"`
	From    string `json:"from,omitempty"`
	State   string `json:"state"`
	Rollout string `json:"rollout,omitempty"`
	// RolloutTarget is the version the latest rollout moved to: the failed
	// one after a rollback, when Target is back to the previous version.
	RolloutTarget string `json:"rolloutTarget,omitempty"`
	// Rollback: the latest rollout is a rollback commit's; AtOnce: it
	// applies at once, without leases or waves (docs/rollouts.md).
	Rollback bool           `json:"rollback,omitempty"`
	AtOnce   bool           `json:"atOnce,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Waves    [][]NodeStatus `json:"waves"`
	Stages   []StageSpan    `json:"stages,omitempty"` // the rollout's stages over Waves (stages.go)
	// NextWave is the wave waiting for batchDelay (or the canary monitor)
	// to pass; nil when none waits, or while paused (nothing counts down).
	NextWave *WaveOpening `json:"nextWave,omitempty"`
	// Gate is set while the rollout's maintenance windows are closed or a
	// freeze is on by the observer's clock: no node takes a lease until
	// Gate.At (each node judges by its own clock).
	Gate *GateStatus `json:"gate,omitempty"`
	// Approval is set while the next wave waits for a person's approval
	// (rollout.approve): which wave, and the command that approves it.
	Approval *ApprovalGate `json:"approval,omitempty"`
	// Approvals are the approvals recorded in the rollout.
	Approvals []RecordedApproval `json:"approvals,omitempty"`
	// Budget is the failure budget and what is spent of it, when the app
	// allows failures (rollout.maxFailures) or a node failed.
	Budget *BudgetStatus `json:"budget,omitempty"`
	Leases []LeaseStatus `json:"leases"`
	// Others are targeted nodes outside the frozen plan (late joiners).
	Others []NodeStatus `json:"others,omitempty"`
	// Held are the targeted nodes the inventory holds from the target (or
	// pins to another version): they take no part in the waves and are not
	// unreachable (docs/rollouts.md, "Holds and pins"). Set by AddHolds.
	Held    []HeldNode    `json:"held,omitempty"`
	Started time.Time     `json:"started,omitzero"`
	Elapsed time.Duration `json:"-"` // JSON: "elapsed": "1m30s", "elapsedSeconds": 90
	Result  *Result       `json:"result,omitempty"`
	// Untrusted names the nodes that refuse the tip of the tracked branch
	// for its signatures, with why ("untrusted: <commit>: <why>"): they keep
	// running what the last accepted tip says (docs/trust.md).
	Untrusted map[string]string `json:"untrusted,omitempty"`
	// Warnings are what the operator should know before it costs requests
	// (stop-then-start swaps) or trust (an invalid tip).
	Warnings []string `json:"warnings,omitempty"`
}

// NodeStatus is one node's place in a rollout.
type NodeStatus struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	// Swap is how the node's release switches versions (AppReport.Swap).
	Swap string `json:"swap,omitempty"`
	// Stale: the node's agent is not alive in the shared state (etcd: its
	// liveness lease expired), so its report is its last word.
	Stale bool `json:"stale,omitempty"`
}

// BudgetStatus is a rollout's failure budget: Failed of the planned nodes
// failed, MaxFailures may before the rollout fails.
type BudgetStatus struct {
	MaxFailures int `json:"maxFailures"`
	Failed      int `json:"failed"`
}

// GateStatus is a closed time gate: why, and when it opens (zero At: not
// within a year).
type GateStatus struct {
	Reason  string        `json:"reason"`
	At      time.Time     `json:"at,omitzero"`
	OpensIn time.Duration `json:"-"` // JSON: "opensIn": "2h3m0s", "opensInSeconds": 7380
}

// MarshalJSON writes OpensIn as "opensIn" and "opensInSeconds".
func (g GateStatus) MarshalJSON() ([]byte, error) {
	type plain GateStatus
	return withDurations(plain(g), durationField{"opensIn", g.OpensIn})
}

// gateStatus is the gate of app at now when closed, else nil.
func gateStatus(app spec.App, now time.Time) *GateStatus {
	g := GateAt(app.Rollout, now)
	if g.Open {
		return nil
	}
	gs := &GateStatus{Reason: g.Reason, At: g.Next}
	if !g.Next.IsZero() {
		gs.OpensIn = g.Next.Sub(now).Round(time.Second)
	}
	return gs
}

// ApprovalGate is a wave waiting for approval.
type ApprovalGate struct {
	Wave    int    `json:"wave"` // counted from 1, as in the text
	Command string `json:"command"`
}

// WaveOpening is when the next wave opens, by the clock of the agent that
// recorded the previous wave done (an estimate: each node counts batchDelay
// from when it saw that event).
type WaveOpening struct {
	Wave    int           `json:"wave"`            // counted from 1, as in the text
	Stage   int           `json:"stage,omitempty"` // the wave waits for this stage's bake (counted from 1), not batchDelay
	At      time.Time     `json:"at"`
	OpensIn time.Duration `json:"-"` // JSON: "opensIn": "12s", "opensInSeconds": 12
	stage   string        // StageName of Stage
}

// StatusOf summarises an app's rollout from its record, the node reports and
// the leases. now is the observer's clock: elapsed time, countdowns, leases.
func StatusOf(app spec.App, record []Event, reports map[string]NodeReport, leases []Lease, now time.Time) Status {
	st := Status{App: app.Name, Target: app.Version, State: StateNone, Waves: [][]NodeStatus{},
		Leases: LeaseStatuses(held(leases), now)}
	for n, rep := range reports {
		if rep.Untrusted != "" {
			if st.Untrusted == nil {
				st.Untrusted = map[string]string{}
			}
			st.Untrusted[n] = rep.Untrusted
		}
	}
	r := Latest(record)
	if r == nil {
		return st
	}
	st.From, st.Rollout, st.RolloutTarget, st.Reason = r.From, r.ID, r.Target, r.Reason
	st.State = stateOf(r, app)
	st.Rollback, st.AtOnce, st.Stages = r.IsRollback, r.AtOnce, r.Stages
	st.Started = record[r.Started].Time
	st.Elapsed = elapsed(record, r, now)
	if r.Ended() {
		st.Result = r.Result()
	}
	if allowed, failed := app.Rollout.MaxFailures.Of(len(planned(r))), len(r.failedInPlan()); !r.AtOnce && (allowed > 0 || failed > 0) {
		st.Budget = &BudgetStatus{MaxFailures: allowed, Failed: failed}
	}
	if st.State == StateProgressing {
		st.NextWave = nextWave(app, record, r, now)
		if !r.IsRollback {
			st.Gate = gateStatus(app, now)
		}
		if k := r.NextGate(); k > 0 && hasWaveDone(r, k-1) {
			st.Approval = &ApprovalGate{Wave: WaveNumber(k), Command: fmt.Sprintf("reconciler promote %s --wave %d", app.Name, WaveNumber(k))}
		}
	}
	st.Approvals = r.Approvals
	inPlan := map[string]bool{}
	for k, w := range r.Waves {
		var row []NodeStatus
		for _, n := range w {
			inPlan[n] = true
			row = append(row, st.waiting(k, nodeStatus(n, app.Name, r, reports)))
		}
		st.Waves = append(st.Waves, row)
	}
	for _, n := range sortedKeys(reports) {
		if _, runs := reports[n].Apps[app.Name]; runs && !inPlan[n] {
			st.Others = append(st.Others, nodeStatus(n, app.Name, r, reports))
		}
	}
	st.Warnings = swapWarnings(st)
	return st
}

func stateOf(r *Rollout, app spec.App) string {
	switch r.Outcome {
	case OutcomeCompleted:
		return StateComplete
	case OutcomeFailed:
		return StateFailed
	case OutcomeRolledBack:
		return StateRolledBack
	case OutcomeSuperseded:
		return StateSuperseded
	}
	if (r.Paused || app.Paused) && !r.AtOnce { // an at-once rollback ignores a pause
		return StatePaused
	}
	return StateProgressing
}

// nodeStatus combines the record's verdict with the node's own report, so
// the state says what the node does now: a canary that failed and serves
// the previous version is rolled_back, not failed.
func nodeStatus(n, app string, r *Rollout, reports map[string]NodeReport) NodeStatus {
	rep, reported := reports[n].Apps[app]
	ns := NodeStatus{Node: n, Version: rep.Version, State: rep.State, Reason: rep.Error, Swap: rep.Swap, Stale: reports[n].Stale}
	back := reported && rep.Version != "" && rep.Version != r.Target && rep.State == AppHealthy
	switch {
	case hasKey(r.Failed, n) && back:
		ns.State, ns.Reason = NodeRolledBack, fmt.Sprintf("%s failed: %s", r.Target, r.Failed[n])
	case hasKey(r.Failed, n):
		ns.State, ns.Reason = NodeFailed, r.Failed[n]
	case hasKey(r.Skipped, n) && rep.Version == r.Target && rep.State == AppHealthy:
		// Skipped, and caught up since (a late node converges after).
		ns.State, ns.Reason = NodeUpgraded, "skipped in the rollout ("+r.Skipped[n]+"), on the target since"
	case hasKey(r.Skipped, n):
		ns.State, ns.Reason = NodeSkipped, r.Skipped[n]
	case hasKey(r.Held, n) && !(rep.Version == r.Target && rep.State == AppHealthy):
		ns.State, ns.Reason = NodeHeld, r.Held[n]
	case !reported:
		ns.State = NodeUnknown
	case hasKey(r.Done, n) && rep.Version == r.Target && rep.State == AppHealthy:
		ns.State, ns.Reason = NodeUpgraded, ""
	case hasKey(r.Done, n) && r.Outcome == OutcomeRolledBack && back:
		ns.State, ns.Reason = NodeRolledBack, fmt.Sprintf("rolled back with the rollout of %s: %s", r.Target, r.Reason)
	case r.Ended() && !r.terminal(n) && rep.Version != r.Target && !inFlight(rep.State):
		ns.State, ns.Reason = NodeNotStarted, "the rollout "+endedAs(r.Outcome)+" before this node's turn"
	}
	return ns
}

// AddHolds marks the nodes of st that the inventory holds from app's
// target (held, or pinned to another version) and lists every such targeted
// node in st.Held. A node that already runs the target is not marked.
func (st *Status) AddHolds(app spec.App, inv []NodeInfo) {
	rollback := st.Rollback && st.RolloutTarget == app.Version
	_, held := targeted(app, inv, rollback)
	st.Held = held
	why := map[string]string{}
	for _, h := range held {
		why[h.Node] = h.Reason
	}
	mark := func(ns *NodeStatus) {
		if r, ok := why[ns.Node]; ok && ns.Version != app.Version && !inFlight(ns.State) {
			ns.State, ns.Reason = NodeHeld, r
		}
	}
	for _, w := range st.Waves {
		for i := range w {
			mark(&w[i])
		}
	}
	for i := range st.Others {
		mark(&st.Others[i])
	}
}

// endedAs says how a rollout ended, for a sentence.
func endedAs(outcome string) string {
	switch outcome {
	case OutcomeRolledBack:
		return "was rolled back"
	case OutcomeSuperseded:
		return "was superseded"
	}
	return outcome
}

// inFlight reports whether a node is moving between versions now.
func inFlight(state string) bool { return state == AppUpgrading || state == AppSwitching }

// waiting replaces a waiting node's stale reason (the agent's words at its
// last report) with what the record says now.
func (st Status) waiting(k int, ns NodeStatus) NodeStatus {
	if ns.State != AppWaiting {
		return ns
	}
	switch {
	case st.State == StatePaused:
		ns.Reason = "rollout paused"
	case st.Approval != nil && st.Approval.Wave == WaveNumber(k):
		ns.Reason = ApprovalWait(st.App, k)
	case st.Gate != nil:
		ns.Reason = "no switch starts now: " + st.Gate.Reason
	case st.NextWave != nil && st.NextWave.Wave == WaveNumber(k):
		ns.Reason = st.NextWave.text()
	}
	return ns
}

// nextWave is the first wave not recorded done whose predecessor is, when
// its batchDelay (plus the canary monitor after the canary wave) has not run
// out yet by the recorder's clock. Resuming restarts the delay.
func nextWave(app spec.App, record []Event, r *Rollout, now time.Time) *WaveOpening {
	for k := 1; k < len(r.Waves); k++ {
		if _, done := r.WaveDone[k]; done {
			continue
		}
		i, prevDone := r.WaveDone[k-1]
		if !prevDone {
			return nil
		}
		from := record[i].Time
		if r.Resumed > i && record[r.Resumed].Time.After(from) {
			from = record[r.Resumed].Time // resuming restarts the delay
		}
		at := from.Add(r.delayBefore(k, r.Options.BatchDelay)) // a stage's bake (stages.go)
		if k == 1 && app.Rollout.Strategy == spec.StrategyCanary {
			at = at.Add(app.Rollout.Canary.Monitor.Duration)
		}
		if r.Gated(k) {
			a, approved := r.approvedAt(k)
			if !approved {
				return nil // no countdown: it waits for a person (Status.Approval)
			}
			at = maxTime(at, record[a].Time)
		}
		if record[i].Time.IsZero() || !at.After(now) {
			return nil
		}
		w := &WaveOpening{Wave: WaveNumber(k), At: at, OpensIn: at.Sub(now).Round(time.Second)}
		if s, ok := r.bakeBefore(k); ok {
			w.Stage, w.stage = s.Index+1, StageName(s)
		}
		return w
	}
	return nil
}

func hasWaveDone(r *Rollout, k int) bool { _, ok := r.WaveDone[k]; return ok }

// swapWarnings names the nodes whose release cannot be hot-swapped.
func swapWarnings(st Status) []string {
	var nodes []string
	for _, w := range append(slices.Clone(st.Waves), st.Others) {
		for _, n := range w {
			if n.Swap == SwapStopStart {
				nodes = append(nodes, n.Node)
			}
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s on %s: every switch of %s refuses requests for a moment; declare the sockets in the release's listen to get the hot swap",
		SwapStopStartText, strings.Join(nodes, ", "), st.App)}
}

// MarshalJSON writes Elapsed as "elapsed" and "elapsedSeconds".
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status
	return withDurations(plain(s), durationField{"elapsed", s.Elapsed})
}

// MarshalJSON writes OpensIn as "opensIn" and "opensInSeconds".
func (w WaveOpening) MarshalJSON() ([]byte, error) {
	type plain WaveOpening
	return withDurations(plain(w), durationField{"opensIn", w.OpensIn})
}

// elapsed is the rollout's duration by its writers' clocks: up to its end
// event when it ended, else up to now.
func elapsed(record []Event, r *Rollout, now time.Time) time.Duration {
	start := record[r.Started].Time
	end := now
	if r.Ended() {
		end = record[len(record)-1].Time
		for i := len(record) - 1; i > r.Started; i-- {
			if record[i].Rollout == r.ID {
				end = record[i].Time
				break
			}
		}
	}
	if start.IsZero() || end.Before(start) {
		return 0
	}
	return end.Sub(start).Round(time.Second)
}

func held(ls []Lease) []Lease {
	out := []Lease{}
	for _, l := range ls {
		if l.Held() {
			out = append(out, l)
		}
	}
	return out
}

// Audit lists which nodes run which version of app: version -> sorted nodes.
// Nodes that run nothing are listed under "". When the app's runtime
// reports its releases (an Erlang VM), the one it calls current counts.
func Audit(app string, reports map[string]NodeReport) map[string][]string {
	out := map[string][]string{}
	for _, n := range sortedKeys(reports) {
		if a, ok := reports[n].Apps[app]; ok {
			v := a.Version
			for _, r := range a.Releases {
				if r.Status == "current" {
					v = r.Version
				}
			}
			out[v] = append(out[v], n)
		}
	}
	return out
}

// InventoryOf merges the declared nodes with those that reported themselves;
// reported labels win over declared ones of the same key.
func InventoryOf(declared map[string]spec.Node, reports map[string]NodeReport) []NodeInfo {
	all := maps.Clone(declared)
	if all == nil {
		all = map[string]spec.Node{}
	}
	for n, r := range reports {
		d := all[n]
		labels := maps.Clone(d.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, r.Labels)
		d.Labels = labels
		all[n] = d
	}
	return Inventory(all)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
