package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// The metric gates (health.metrics) as plan and diff show them.

// gateLine is one gate for people: errors: rate(...) <= 0.05, for 1m0s every 15s.
func gateLine(m spec.Metric) string {
	return fmt.Sprintf("%s: %s %s, for %s every %s", m.Name, m.Query, m.Bounds(), m.For, m.Interval)
}

// gatesHeading says where the gates are asked and when.
func gatesHeading(p reconciler.Plan) string {
	when := "after each node's switch"
	if p.Strategy == spec.StrategyCanary {
		when += " and during the canary's monitor"
	}
	return fmt.Sprintf("metric gates (Prometheus %s), %s; one out of bounds fails the node:", redact.String(p.Prometheus), when)
}

// writeGatesText writes the gates under a plan, indented by indent.
func writeGatesText(w io.Writer, p reconciler.Plan, indent string) {
	if len(p.Metrics) == 0 {
		return
	}
	fmt.Fprintf(w, "%s%s\n", indent, gatesHeading(p))
	for _, m := range p.Metrics {
		fmt.Fprintf(w, "%s  %s\n", indent, gateLine(m))
	}
}

// writeGatesMarkdown writes the gates as a table.
func writeGatesMarkdown(w io.Writer, p reconciler.Plan) {
	if len(p.Metrics) == 0 {
		return
	}
	h := gatesHeading(p)
	fmt.Fprintf(w, "%s\n\n| gate | query | bounds | for | every |\n|---|---|---|---|---|\n", strings.ToUpper(h[:1])+strings.TrimSuffix(h[1:], ":")+".")
	for _, m := range p.Metrics {
		fmt.Fprintf(w, "| `%s` | `%s` | %s | %s | %s |\n", m.Name, strings.ReplaceAll(m.Query, "|", `\|`), m.Bounds(), m.For, m.Interval)
	}
	fmt.Fprintln(w)
}
