package reconciler

import (
	"fmt"
	"maps"
	"slices"

	"github.com/fleetops/reconciler/spec"
)

// HoldChange is a node whose hold or pins differ between two fleets: a
// commit that only holds or pins nodes changes no app, yet changes what
// the next rollouts do (docs/rollouts.md, "Holds and pins").
type HoldChange struct {
	Node    string   `json:"node"`
	Changes []string `json:"changes"` // "held", "hold lifted", "pins web to 1.0.0", "unpins web (was 1.0.0)"
}

// DiffHolds lists the nodes declared in base or head whose hold or pins
// changed, sorted by name (base may be nil).
func DiffHolds(base, head *spec.Fleet) []HoldChange {
	var bn map[string]spec.Node
	if base != nil {
		bn = base.Nodes
	}
	names := map[string]bool{}
	for n := range bn {
		names[n] = true
	}
	for n := range head.Nodes {
		names[n] = true
	}
	var out []HoldChange
	for _, n := range slices.Sorted(maps.Keys(names)) {
		b, h := bn[n], head.Nodes[n]
		var ch []string
		switch {
		case h.Hold && !b.Hold:
			ch = append(ch, "held (takes no upgrade; rollbacks still apply)")
		case b.Hold && !h.Hold:
			ch = append(ch, "hold lifted")
		}
		apps := map[string]bool{}
		for a := range b.Pin {
			apps[a] = true
		}
		for a := range h.Pin {
			apps[a] = true
		}
		for _, a := range slices.Sorted(maps.Keys(apps)) {
			was, is := b.Pin[a], h.Pin[a]
			switch {
			case was == is:
			case is == "":
				ch = append(ch, fmt.Sprintf("unpins %s (was %s)", a, was))
			case was == "":
				ch = append(ch, fmt.Sprintf("pins %s to %s", a, is))
			default:
				ch = append(ch, fmt.Sprintf("pins %s to %s (was %s)", a, is, was))
			}
		}
		if len(ch) > 0 {
			out = append(out, HoldChange{Node: n, Changes: ch})
		}
	}
	return out
}
