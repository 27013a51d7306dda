package reconciler

import (
	"maps"
	"slices"
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

// Status is the rollout of one app now, as `reconciler status` shows it.
type Status struct {
	App     string `json:"app"`
	Target  string `json:"target"`
	From    string `json:"from,omitempty"`
	State   string `json:"state"`
	Rollout string `json:"rollout,omitempty"`
	// RolloutTarget is the version the latest rollout moved to: the failed
	// one after a rollback, when Target is back to the previous version.
	RolloutTarget string         `json:"rolloutTarget,omitempty"`
	Reason        string         `json:"reason,omitempty"`
	Waves         [][]NodeStatus `json:"waves"`
	Leases        []Lease        `json:"leases"`
	// Others are targeted nodes outside the frozen plan (late joiners).
	Others  []NodeStatus  `json:"others,omitempty"`
	Started time.Time     `json:"started,omitzero"`
	Elapsed time.Duration `json:"elapsed"`
	Result  *Result       `json:"result,omitempty"`
	// Untrusted names the nodes that refuse the tip of the tracked branch
	// for its signatures, with why ("untrusted: <commit>: <why>"): they keep
	// running what the last accepted tip says (docs/trust.md).
	Untrusted map[string]string `json:"untrusted,omitempty"`
}

// NodeStatus is one node's place in a rollout.
type NodeStatus struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// StatusOf summarises an app's rollout from its record, the node reports and
// the leases. now is used for the elapsed time of a rollout in progress.
func StatusOf(app spec.App, record []Event, reports map[string]NodeReport, leases []Lease, now time.Time) Status {
	st := Status{App: app.Name, Target: app.Version, State: StateNone, Waves: [][]NodeStatus{}, Leases: held(leases)}
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
	st.Started = record[r.Started].Time
	st.Elapsed = elapsed(record, r, now)
	if r.Ended() {
		st.Result = r.Result()
	}
	inPlan := map[string]bool{}
	for _, w := range r.Waves {
		var row []NodeStatus
		for _, n := range w {
			inPlan[n] = true
			row = append(row, nodeStatus(n, app.Name, r, reports))
		}
		st.Waves = append(st.Waves, row)
	}
	for _, n := range sortedKeys(reports) {
		rep := reports[n]
		if _, runs := rep.Apps[app.Name]; runs && !inPlan[n] {
			st.Others = append(st.Others, nodeStatus(n, app.Name, r, reports))
		}
	}
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
	if r.Paused || app.Paused {
		return StatePaused
	}
	return StateProgressing
}

// nodeStatus combines the record's verdict with the node's own report.
func nodeStatus(n, app string, r *Rollout, reports map[string]NodeReport) NodeStatus {
	rep, reported := reports[n].Apps[app]
	ns := NodeStatus{Node: n, Version: rep.Version, State: rep.State}
	switch {
	case !reported:
		ns.State = "unknown"
	case hasKey(r.Failed, n):
		ns.State, ns.Reason = "failed", r.Failed[n]
	case hasKey(r.Skipped, n):
		ns.State, ns.Reason = "skipped", r.Skipped[n]
	case hasKey(r.Done, n) && rep.Version == r.Target:
		ns.State = "upgraded"
	}
	if ns.Reason == "" {
		ns.Reason = rep.Error
	}
	return ns
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
