package reconciler

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// NodeInfo is a node of the inventory as the planner sees it: its name and
// labels (declared in the fleet repo or announced by its agent), and the
// hold and pins the fleet repo declares for it.
type NodeInfo struct {
	Name   string
	Labels map[string]string
	Hold   bool
	Pin    map[string]string
}

// HeldFrom says why this node takes no move of app to version: it is held
// (an upgrade only: rollbacks still apply to a held node), or pinned to
// another version of app (any move). ok is false when it may move.
func (n NodeInfo) HeldFrom(app, version string, rollback bool) (reason string, ok bool) {
	if v, pinned := n.Pin[app]; pinned && v != version {
		return fmt.Sprintf("pinned to %s in the inventory", v), true
	}
	if n.Hold && !rollback {
		return "held in the inventory", true
	}
	return "", false
}

// HeldNode is a targeted node that a plan leaves out, and why.
type HeldNode struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// Plan is the ordered waves in which an app's new version reaches the nodes
// it targets. Waves is never nil, so an app that targets no node shows
// "waves": [] in JSON.
type Plan struct {
	App      string     `json:"app"`
	Version  string     `json:"version"`
	Strategy string     `json:"strategy"`
	Waves    [][]string `json:"waves"`
	Unknown  []string   `json:"unknown,omitempty"` // listed in the spec, not in the inventory
	// Held are the targeted nodes left out of the waves: held, or pinned to
	// another version (docs/rollouts.md, "Holds and pins").
	Held []HeldNode `json:"held,omitempty"`
	// MaxFailures is how many of the planned nodes may fail and be skipped
	// before the rollout fails (rollout.maxFailures over the plan).
	MaxFailures int `json:"maxFailures,omitempty"`
	// Prometheus and Metrics are the app's metric gates (health.metrics):
	// each node passes them for their `for` after its switch before it
	// counts, and a canary during its monitor.
	Prometheus string        `json:"prometheus,omitempty"`
	Metrics    []spec.Metric `json:"metrics,omitempty"`
	// Stages are the spans of rollout.stages over Waves, in order
	// (stages.go); EmptyStages the indexes of the stages that matched no
	// targeted node, left out.
	Stages      []StageSpan `json:"stages,omitempty"`
	EmptyStages []int       `json:"emptyStages,omitempty"`
	// Approve is rollout.approve when it gates waves, and Gated the waves
	// (counted from 1) that wait for `reconciler promote`.
	Approve string `json:"approve,omitempty"`
	Gated   []int  `json:"gated,omitempty"`
}

// MetricWindow is how long a node watches app's metric gates after its
// switch: the longest `for` (0 without gates).
func MetricWindow(app spec.App) time.Duration {
	var d time.Duration
	for _, m := range app.Health.Metrics {
		d = max(d, m.For.Duration)
	}
	return d
}

// PlanWaves orders the inventory nodes that app targets into waves:
//
//   - rolling: chunks of rollout.batchSize nodes;
//   - canary: the first canary.count nodes alone, then chunks of batchSize;
//   - all_at_once: one wave.
//
// With rollout.stages, each stage is chunked so in turn (stages.go).
//
// Nodes are ordered by name, so the plan is the same on every agent. Nodes
// the app lists by name that are not in the inventory are returned in
// Unknown, sorted, rather than dropped. Targeted nodes that are held, or
// pinned to another version, are left out of the waves and listed in Held
// (PlanRollback keeps held nodes: a rollback applies to them). An unknown strategy plans as rolling
// and a size below 1 counts as 1 (specs are validated before they get here).
func PlanWaves(app spec.App, inventory []NodeInfo) Plan { return plan(app, inventory, false) }

// PlanRollback is PlanWaves for a rollback: a held node takes it, a node
// pinned to another version does not.
func PlanRollback(app spec.App, inventory []NodeInfo) Plan { return plan(app, inventory, true) }

func plan(app spec.App, inventory []NodeInfo, rollback bool) Plan {
	nodes, held := targeted(app, inventory, rollback)
	p := Plan{
		App:      app.Name,
		Version:  app.Version,
		Strategy: app.Rollout.Strategy,
		Waves:    [][]string{},
		Unknown:  unknown(app.Nodes, inventory),
		Held:     held,
	}
	if len(app.Health.Metrics) > 0 {
		p.Prometheus, p.Metrics = app.Health.Prometheus, app.Health.Metrics
	}
	switch {
	case len(app.Rollout.Stages) > 0:
		p.Waves, p.Stages, p.EmptyStages = stagedWaves(app, nodes, inventory)
	case app.Rollout.Strategy == spec.StrategyAllAtOnce:
		p.Waves = chunks(nodes, len(nodes))
	case app.Rollout.Strategy == spec.StrategyCanary:
		n := min(max(app.Rollout.Canary.Count, 1), len(nodes))
		p.Waves = append(chunks(nodes[:n], n), chunks(nodes[n:], app.Rollout.BatchSize)...)
	default:
		p.Waves = chunks(nodes, app.Rollout.BatchSize)
	}
	p.MaxFailures = app.Rollout.MaxFailures.Of(len(planned(&Rollout{Waves: p.Waves})))
	if !rollback {
		p.Approve, p.Gated = gatedWaves(app, p.Waves)
	}
	return p
}

// targeted returns the sorted, de-duplicated names of the inventory nodes
// that app selects and that may move to its version, and those held from it.
func targeted(app spec.App, inventory []NodeInfo, rollback bool) ([]string, []HeldNode) {
	seen := make(map[string]bool, len(inventory))
	reasons := map[string]string{}
	match := app.Nodes.Matcher()
	for _, n := range inventory {
		if !match(n.Name, n.Labels) {
			continue
		}
		if why, held := n.HeldFrom(app.Name, app.Version, rollback); held {
			reasons[n.Name] = why
			continue
		}
		seen[n.Name] = true
	}
	var held []HeldNode
	for _, n := range slices.Sorted(maps.Keys(reasons)) {
		if !seen[n] {
			held = append(held, HeldNode{Node: n, Reason: reasons[n]})
		}
	}
	return slices.Sorted(maps.Keys(seen)), held
}

// unknown returns the sorted names t lists that are not in the inventory.
func unknown(t spec.Targets, inventory []NodeInfo) []string {
	known := make(map[string]bool, len(inventory))
	for _, n := range inventory {
		known[n.Name] = true
	}
	var out []string
	for _, name := range t.Names {
		if !known[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// chunks splits nodes into consecutive waves of at most size nodes (at
// least 1); no nodes make no waves.
func chunks(nodes []string, size int) [][]string {
	size = max(size, 1)
	waves := [][]string{}
	for len(nodes) > 0 {
		n := min(size, len(nodes))
		waves = append(waves, slices.Clone(nodes[:n]))
		nodes = nodes[n:]
	}
	return waves
}

// Inventory lists a fleet's declared nodes, sorted by name.
func Inventory(nodes map[string]spec.Node) []NodeInfo {
	out := make([]NodeInfo, 0, len(nodes))
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[name]
		out = append(out, NodeInfo{Name: name, Labels: n.Labels, Hold: n.Hold, Pin: n.Pin})
	}
	return out
}
