package reconciler

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// This file holds the shared state the agents exchange through Git: node
// reports, rollout records and leases. Package fleetrepo stores them; the
// rollout engine (Decide, decide.go) decides from them.

// NodeReport is what a node says about itself, kept at
// refs/reconciler/nodes/<node>, written only by that node.
type NodeReport struct {
	Node         string            `json:"node"`
	Labels       map[string]string `json:"labels,omitempty"`
	AgentVersion string            `json:"agentVersion,omitempty"`
	Time         time.Time         `json:"time"`
	SpecCommit   string            `json:"specCommit,omitempty"` // tip of the tracked branch last evaluated
	SpecError    string            `json:"specError,omitempty"`  // why that spec could not be applied
	// Untrusted is "untrusted: <commit>: <why>" while the node refuses the
	// branch's tip for its signatures (docs/trust.md); SpecCommit is then
	// the last accepted tip, still applied.
	Untrusted string `json:"untrusted,omitempty"`
	// Conflict is set while the node refuses to act because another agent
	// writes its report (two agents with one node name): it says so.
	Conflict string               `json:"conflict,omitempty"`
	Apps     map[string]AppReport `json:"apps,omitempty"`
	// Stale is set by a reader, never written: the store tracks the node's
	// liveness (etcd: its agent's liveness lease) and it has expired, so
	// this report is the last word of an agent that stopped or lost the
	// store. The Git store does not track liveness and leaves it false.
	Stale bool `json:"stale,omitempty"`
}

// App states in a node report.
const (
	AppHealthy   = "healthy"   // Version runs and passed its health check
	AppUpgrading = "upgrading" // installing Target (fetch, verify, unpack) before switching
	AppSwitching = "switching" // the driver is switching to Target: starting it, checking its health
	AppWaiting   = "waiting"   // Target known, waiting for its wave or a lease
	// AppBlocked: Target known, and nothing moves until a person acts (the
	// shared state refuses this node's writes); Error says
	// "blocked: <cause>, a person must act".
	AppBlocked   = "blocked"
	AppFailed    = "failed"    // moving to Target failed; Version (the previous) restored if any
	AppUnhealthy = "unhealthy" // Version runs but fails its health check
	AppStopped   = "stopped"   // nothing runs
)

// AppReport is one app on one node.
type AppReport struct {
	Version  string `json:"version,omitempty"` // running version, "" when none
	Previous string `json:"previous,omitempty"`
	State    string `json:"state"`
	Target   string `json:"target,omitempty"`  // version being moved to
	Rollout  string `json:"rollout,omitempty"` // rollout id the state refers to
	Lease    string `json:"lease,omitempty"`   // fencing token of the lease held for it
	Error    string `json:"error,omitempty"`
	// NextRetry: a failed first install (nothing runs) is tried again then.
	NextRetry time.Time `json:"nextRetry,omitzero"`
	Since     time.Time `json:"since"`
	// Swap is how the release switches versions (SwapHot, SwapStopStart...).
	Swap string `json:"swap,omitempty"`
	// Releases are the versions the app's runtime itself knows, when it
	// keeps several (an Erlang VM's release_handler:which_releases()).
	Releases []RuntimeRelease `json:"releases,omitempty"`
}

// RuntimeRelease is one release as the app's runtime sees it.
type RuntimeRelease struct {
	Version string `json:"version"`
	// Status is the runtime's word: "permanent", "current", "old", "unpacked".
	Status string `json:"status"`
}

// Rollout event types, one commit each on refs/reconciler/rollouts/<app>.
const (
	EventStarted         = "started"          // Target, From, Waves, Stages (stages.go)
	EventWaveDone        = "wave_done"        // Wave
	EventNodeDone        = "node_done"        // Node, Lease
	EventNodeFailed      = "node_failed"      // Node, Reason, Lease
	EventNodeUnreachable = "node_unreachable" // Node, Reason
	EventNodeHeld        = "node_held"        // Node, Reason: held or pinned in the inventory
	// EventNodeLost: Node's lease (Lease) expired without a verdict from
	// it: it went silent (starved, stopped, cut off), which says nothing of
	// the version. The slot is freed and the node retried, at most
	// MaxLeaseLosses times (docs/rollouts.md, "Slow is not failed").
	EventNodeLost       = "node_lost" // Node, Lease, Reason
	EventPaused         = "paused"
	EventResumed        = "resumed"
	EventOptionsChanged = "options_changed"
	// EventApproved: a person approved the rollout's gated waves up to Wave
	// with the approval commit Commit (reconciler promote; rollout.approve).
	EventApproved   = "approved"    // Wave, Commit, Reason (who approved)
	EventCompleted  = "completed"   // Result
	EventFailed     = "failed"      // Node, Reason
	EventRolledBack = "rolled_back" // RollbackCommit, Reason
	EventSuperseded = "superseded"  // by a newer target
)

// eventTypes are the event types above: readers skip an event of any other
// type as garbage (fleetrepo, etcdstore), so a type missing here is an
// event written and never read (TestEveryEventTypeIsKnown).
var eventTypes = map[string]bool{
	EventStarted: true, EventWaveDone: true, EventNodeDone: true, EventNodeFailed: true,
	EventNodeUnreachable: true, EventNodeHeld: true, EventNodeLost: true, EventPaused: true,
	EventResumed: true, EventOptionsChanged: true, EventApproved: true, EventCompleted: true,
	EventFailed: true, EventRolledBack: true, EventSuperseded: true,
}

// KnownEventType reports whether t is a rollout event type.
func KnownEventType(t string) bool { return eventTypes[t] }

// EventTypes lists every rollout event type, sorted.
func EventTypes() []string {
	out := make([]string, 0, len(eventTypes))
	for t := range eventTypes {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Event is one entry of a rollout record. Rollout is the id of the rollout:
// the commit of the tracked branch that first set Target.
type Event struct {
	Type           string        `json:"type"`
	Rollout        string        `json:"rollout"`
	By             string        `json:"by"`   // node (or operator) that wrote it
	Time           time.Time     `json:"time"` // the writer's clock, informational only
	Target         string        `json:"target,omitempty"`
	From           string        `json:"from,omitempty"`
	Waves          [][]string    `json:"waves,omitempty"` // the frozen plan
	Stages         []StageSpan   `json:"stages,omitempty"`
	Wave           int           `json:"wave,omitempty"`
	Node           string        `json:"node,omitempty"`
	Lease          string        `json:"lease,omitempty"`
	Reason         string        `json:"reason,omitempty"`
	RollbackCommit string        `json:"rollbackCommit,omitempty"`
	Result         *Result       `json:"result,omitempty"`
	Options        *RolloutFlags `json:"options,omitempty"`
	// Spec is the tracked branch's commit whose spec decided a paused,
	// resumed or options_changed event: only agents on it or a descendant
	// steer the rollout after it.
	Spec string `json:"spec,omitempty"`
	// Rollback marks a started event whose commit is a rollback (it carries
	// the rollback trailers, or is a git revert of an upgrade commit);
	// RollbackOf is the commit it undoes when known. AtOnce: every targeted
	// node converges at once, without leases or waves (absent for a
	// rollback committed with --waves, which rolls like an upgrade).
	Rollback   bool   `json:"rollback,omitempty"`
	RollbackOf string `json:"rollbackOf,omitempty"`
	AtOnce     bool   `json:"atOnce,omitempty"`
	// Commit is the approval commit of an approved event.
	Commit string `json:"commit,omitempty"`
}

// Approval is an approval commit on the tracked branch (trailers
// Reconciler-Promote and Reconciler-Wave, written by reconciler promote):
// it lets the waves of Rollout up to Wave (an index: wave Wave+1 in the
// text) past their approval gate. The agent reads them from the history
// between the rollout's commit and its tip (Input.Approvals).
type Approval struct {
	Rollout string
	Wave    int
	Commit  string
	By      string // the commit's author, "Name <email>"
}

// RollbackMark says that the commit at the tip of the tracked branch is a
// rollback of an app: the agent reads it from the commit's trailers
// (fleetrepo.RollbackMarkOf) and passes it in Input.Rollback.
type RollbackMark struct {
	Of    string // the commit undone, when known
	Waves bool   // Reconciler-Rollout: waves: keep the waves and leases
}

// RolloutFlags are the options an options_changed event records.
type RolloutFlags struct {
	BatchSize  int           `json:"batchSize"`
	BatchDelay time.Duration `json:"batchDelay"`
	// Approve is rollout.approve when it gates waves ("after-canary",
	// "each-wave"); empty for "none", so records written before approvals
	// existed read the same.
	Approve string `json:"approve,omitempty"`
}

// Result is a finished rollout's outcome, in the original design's shape.
type Result struct {
	Total    int          `json:"total"`
	Upgraded int          `json:"upgraded"`
	Failed   int          `json:"failed"`
	Skipped  int          `json:"skipped"`
	Nodes    []NodeResult `json:"nodes"`
}

// NodeResult is one node's part in a Result.
type NodeResult struct {
	Node    string `json:"node"`
	Outcome string `json:"outcome"` // upgraded | failed | skipped
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Lease is one slot of an app's lease set as an observer sees it, at
// refs/reconciler/leases/<app>/<slot>.
type Lease struct {
	App      string        `json:"app"`
	Slot     int           `json:"slot"`
	Holder   string        `json:"holder,omitempty"` // "" when free
	Rollout  string        `json:"rollout,omitempty"`
	Acquired time.Time     `json:"acquired,omitempty"` // holder's clock, informational
	Renewed  time.Time     `json:"renewed,omitempty"`  // holder's clock, informational
	TTL      time.Duration `json:"ttl"`
	// Token is the commit id of the lease ref: the fencing token.
	Token string `json:"token"`
	// Unchanged is how long this observer has seen the lease unchanged, on
	// its own monotonic clock. A held lease unchanged for TTL is expired.
	Unchanged time.Duration `json:"unchanged"`
}

// Held reports whether the slot has a holder (expired or not).
func (l Lease) Held() bool { return l.Holder != "" }

// SortLeases orders leases by app, then slot: how every store lists them.
func SortLeases(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int { return cmp.Or(strings.Compare(a.App, b.App), a.Slot-b.Slot) })
}

// Expired reports whether a held lease has not been seen to change for its TTL.
func (l Lease) Expired() bool { return l.Holder != "" && l.Unchanged >= l.TTL }
