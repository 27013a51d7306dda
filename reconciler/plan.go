package reconciler

import (
	"maps"
	"slices"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// NodeInfo is a node of the inventory as the planner sees it: its name and
// labels (declared in the fleet repo or announced by its agent).
type NodeInfo struct {
	Name   string
	Labels map[string]string
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
	// Prometheus and Metrics are the app's metric gates (health.metrics):
	// each node passes them for their `for` after its switch before it
	// counts, and a canary during its monitor.
	Prometheus string        `json:"prometheus,omitempty"`
	Metrics    []spec.Metric `json:"metrics,omitempty"`
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
// Nodes are ordered by name, so the plan is the same on every agent. Nodes
// the app lists by name that are not in the inventory are returned in
// Unknown, sorted, rather than dropped. An unknown strategy plans as rolling
// and a size below 1 counts as 1 (specs are validated before they get here).
func PlanWaves(app spec.App, inventory []NodeInfo) Plan {
	nodes := targeted(app.Nodes, inventory)
	p := Plan{
		App:      app.Name,
		Version:  app.Version,
		Strategy: app.Rollout.Strategy,
		Waves:    [][]string{},
		Unknown:  unknown(app.Nodes, inventory),
	}
	if len(app.Health.Metrics) > 0 {
		p.Prometheus, p.Metrics = app.Health.Prometheus, app.Health.Metrics
	}
	switch app.Rollout.Strategy {
	case spec.StrategyAllAtOnce:
		p.Waves = chunks(nodes, len(nodes))
	case spec.StrategyCanary:
		n := min(max(app.Rollout.Canary.Count, 1), len(nodes))
		p.Waves = append(chunks(nodes[:n], n), chunks(nodes[n:], app.Rollout.BatchSize)...)
	default:
		p.Waves = chunks(nodes, app.Rollout.BatchSize)
	}
	return p
}

// targeted returns the sorted, de-duplicated names of the inventory nodes
// that t selects.
func targeted(t spec.Targets, inventory []NodeInfo) []string {
	seen := make(map[string]bool, len(inventory))
	match := t.Matcher()
	for _, n := range inventory {
		if match(n.Name, n.Labels) {
			seen[n.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
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
		out = append(out, NodeInfo{Name: name, Labels: nodes[name].Labels})
	}
	return out
}
