package reconciler

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/semver"

	"github.com/fleetops/reconciler/spec"
)

// Change kinds of an app between two fleets.
const (
	ChangeAdded   = "added"
	ChangeRemoved = "removed"
	ChangeUpgrade = "upgrade"   // version moves up
	ChangeDown    = "downgrade" // version moves down
	ChangeEdited  = "edited"    // same version, other fields changed
)

// AppChange is one app's change between two fleets, with what it would do.
type AppChange struct {
	App      string        `json:"app"`
	Kind     string        `json:"kind"`
	From     string        `json:"from,omitempty"`
	To       string        `json:"to,omitempty"`
	Fields   []string      `json:"fields,omitempty"` // top-level fields that changed
	Nodes    []string      `json:"nodes"`            // targeted nodes in the inventory
	Plan     *Plan         `json:"plan,omitempty"`
	Estimate time.Duration `json:"-"` // JSON: "estimate": "20s", "estimateSeconds": 20
	Warnings []string      `json:"warnings,omitempty"`
}

// MarshalJSON writes Estimate as "estimate" and "estimateSeconds".
func (c AppChange) MarshalJSON() ([]byte, error) {
	type plain AppChange
	return withDurations(plain(c), durationField{"estimate", c.Estimate})
}

// DiffOptions tunes a diff.
type DiffOptions struct {
	// NodeEstimate is how long one node takes to switch and pass its
	// health check, for the duration estimate (default 10s).
	NodeEstimate time.Duration
	// FailedTargets maps app -> version -> reason for versions that failed
	// or were rolled back before (from the rollout records).
	FailedTargets map[string]map[string]string
	// Now, when set, is the moment the change is judged at: a rollout
	// whose maintenance windows are closed then (or frozen) is warned of.
	Now time.Time
}

// Diff compares two resolved fleets app by app (sorted by name). base may
// be nil (everything is added).
func Diff(base, head *spec.Fleet, inv []NodeInfo, opt DiffOptions) []AppChange {
	if opt.NodeEstimate <= 0 {
		opt.NodeEstimate = 10 * time.Second
	}
	baseApps := map[string]spec.App{}
	if base != nil {
		baseApps = base.Apps
	}
	var out []AppChange
	for _, name := range unionKeys(baseApps, head.Apps) {
		b, inBase := baseApps[name]
		h, inHead := head.Apps[name]
		switch {
		case !inHead:
			out = append(out, AppChange{App: name, Kind: ChangeRemoved, From: b.Version, Nodes: []string{}})
		case !inBase:
			out = append(out, describe(AppChange{App: name, Kind: ChangeAdded, To: h.Version}, h, inv, opt))
		default:
			if c, changed := compare(b, h); changed {
				out = append(out, describe(c, h, inv, opt))
			}
		}
	}
	return out
}

func compare(b, h spec.App) (AppChange, bool) {
	c := AppChange{App: h.Name, From: b.Version, To: h.Version, Kind: ChangeEdited}
	for _, f := range []struct {
		name string
		b, h any
	}{
		{"version", b.Version, h.Version}, {"artifact", b.Artifact, h.Artifact},
		{"rollout", b.Rollout, h.Rollout}, {"health", b.Health, h.Health},
		{"nodes", b.Nodes, h.Nodes}, {"paused", b.Paused, h.Paused},
	} {
		bj, _ := json.Marshal(f.b)
		hj, _ := json.Marshal(f.h)
		if string(bj) != string(hj) {
			c.Fields = append(c.Fields, f.name)
		}
	}
	if b.Version != h.Version {
		c.Kind = ChangeUpgrade
		if CompareVersions(h.Version, b.Version) < 0 {
			c.Kind = ChangeDown
		}
	}
	return c, len(c.Fields) > 0
}

// describe adds the targets, wave plan, estimate and warnings of the head spec.
func describe(c AppChange, h spec.App, inv []NodeInfo, opt DiffOptions) AppChange {
	p := PlanWaves(h, inv)
	c.Plan = &p
	c.Nodes = []string{}
	for _, w := range p.Waves {
		c.Nodes = append(c.Nodes, w...)
	}
	slices.Sort(c.Nodes)
	c.Estimate = Estimate(h, p, opt.NodeEstimate)
	for _, u := range p.Unknown {
		c.Warnings = append(c.Warnings, fmt.Sprintf("node %s is listed but unknown to the inventory", u))
	}
	for _, h := range p.Held {
		c.Warnings = append(c.Warnings, fmt.Sprintf("node %s is %s: it takes no part in this rollout", h.Node, h.Reason))
	}
	if len(c.Nodes) == 0 {
		c.Warnings = append(c.Warnings, "targets no node")
	}
	if reason, failed := opt.FailedTargets[h.Name][h.Version]; failed && c.From != c.To {
		c.Warnings = append(c.Warnings, fmt.Sprintf("version %s was rolled back before: %s", h.Version, reason))
	}
	if h.Paused {
		c.Warnings = append(c.Warnings, "app is paused: no node will start")
	}
	if !opt.Now.IsZero() && c.From != c.To {
		if g := GateAt(h.Rollout, opt.Now); !g.Open {
			c.Warnings = append(c.Warnings, "no wave can start now: "+g.closedText(opt.Now)+", by this machine's clock (each node judges by its own)")
		}
	}
	return c
}

// Estimate is a rollout's expected duration: each wave takes one node's
// switch time and the metric gates' window (MetricWindow), waves are
// separated by batchDelay (a stage's bake at a stage boundary), and a
// canary wave adds its monitor time.
func Estimate(app spec.App, p Plan, perNode time.Duration) time.Duration {
	n := len(p.Waves)
	if n == 0 {
		return 0
	}
	d := time.Duration(n)*(perNode+MetricWindow(app)) + betweenWaves(p, app.Rollout.BatchDelay.Duration)
	if app.Rollout.Strategy == spec.StrategyCanary && n > 1 {
		d += app.Rollout.Canary.Monitor.Duration
	}
	return d
}

func unionKeys[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]V{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// CompareVersions orders two semantic versions (leading "v" optional) like
// strings.Compare; invalid versions sort before valid ones.
func CompareVersions(a, b string) int {
	return semver.Compare(canonical(a), canonical(b))
}

// canonical adds the leading "v" that package semver wants.
func canonical(v string) string {
	if len(v) > 0 && v[0] != 'v' {
		return "v" + v
	}
	return v
}
