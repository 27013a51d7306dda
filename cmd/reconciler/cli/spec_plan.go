package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// writePlan prints a plan for people:
//
//	snake_game v1.1.0: canary, 6 nodes in 3 waves
//	  wave 1: eu-1  (canary, then 5m0s of monitoring)
//	  wave 2: eu-2 eu-3 us-1
//	  wave 3: us-2 us-3
func writePlan(e *env, p reconciler.Plan, app spec.App, declared int) {
	nodes := 0
	for _, w := range p.Waves {
		nodes += len(w)
	}
	fmt.Fprintf(e.stdout, "%s %s: %s, %s in %s\n", p.App, p.Version, p.Strategy, count(nodes, "node"), count(len(p.Waves), "wave"))
	for _, s := range p.Stages {
		fmt.Fprintf(e.stdout, "  %s\n", reconciler.StageText(s))
	}
	for i, w := range p.Waves {
		note := ""
		if i == 0 && p.Strategy == spec.StrategyCanary {
			note = fmt.Sprintf("  (canary, then %s of monitoring)", app.Rollout.Canary.Monitor)
		}
		fmt.Fprintf(e.stdout, "  wave %d: %s%s\n", i+1, strings.Join(w, " "), note)
	}
	writeGatesText(e.stdout, p, "  ")
	for _, line := range planNotes(p, app, declared) {
		fmt.Fprintln(e.stdout, line)
	}
}

// planNotes are the remarks under a plan: why it is empty, which listed
// nodes are not declared, whether the app is paused.
func planNotes(p reconciler.Plan, app spec.App, declared int) []string {
	var notes []string
	switch {
	case declared == 0:
		notes = append(notes, "The fleet declares no nodes: agents plan over the nodes that announce themselves.")
	case len(p.Waves) == 0:
		notes = append(notes, "No declared node is targeted.")
	}
	if len(p.Unknown) > 0 {
		notes = append(notes, fmt.Sprintf("Unknown (listed, not declared; planned once their agents announce themselves): %s",
			strings.Join(p.Unknown, " ")))
	}
	if len(p.Held) > 0 {
		var held []string
		for _, h := range p.Held {
			held = append(held, fmt.Sprintf("%s (%s)", h.Node, h.Reason))
		}
		notes = append(notes, "Held (targeted, not in the waves): "+strings.Join(held, ", "))
	}
	if p.MaxFailures > 0 {
		notes = append(notes, fmt.Sprintf("Failure budget: up to %s may fail (each rolls back locally and is skipped); one more fails the rollout (maxFailures %s).",
			count(p.MaxFailures, "node"), app.Rollout.MaxFailures))
	}
	if a := approvalLine(p); a != "" {
		notes = append(notes, "Approval: "+strings.ReplaceAll(a, "`", "")+".")
	}
	for _, w := range app.Rollout.Windows {
		notes = append(notes, fmt.Sprintf("Window: %s %s-%s %s (a node starts a switch only inside a window; rollbacks ignore it)",
			strings.Join(w.Days, ","), w.Start, w.End, w.Timezone))
	}
	for _, f := range app.Rollout.Freeze {
		notes = append(notes, fmt.Sprintf("Freeze: %s to %s%s (no switch starts; rollbacks ignore it)",
			f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), prefixed(": ", f.Reason)))
	}
	if app.Paused {
		notes = append(notes, "Paused: agents keep the version they run until the app is resumed.")
	}
	return notes
}

// prefixed is p+s, or "" when s is empty.
func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
