package cli

import (
	"fmt"
	"strings"

	"github.com/fleetops/reconciler/reconciler"
)

// printDiffMarkdown renders a diff as a pull-request comment.
func printDiffMarkdown(e *env, rep *diffReport) {
	w := e.stdout
	fmt.Fprintf(w, "### reconciler diff: `%s` → `%s`\n\n", orDash(rep.Base), orDash(rep.Head))
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "**%d validation error(s): this change cannot be applied.**\n\n```\n%s\n```\n\n",
			len(rep.Errors), strings.Join(rep.Errors, "\n"))
	}
	for _, a := range rep.Approvals {
		fmt.Fprintf(w, "**%s.**\n\n", strings.ToUpper(a.text()[:1])+a.text()[1:])
	}
	if len(rep.Changes) == 0 {
		if len(rep.Errors) == 0 {
			fmt.Fprintln(w, "No app changes.")
		}
	} else {
		fmt.Fprintln(w, "| app | change | nodes | waves | estimate |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		for _, c := range rep.Changes {
			waves := 0
			if c.Plan != nil {
				waves = len(c.Plan.Waves)
			}
			fmt.Fprintf(w, "| `%s` | %s | %d | %d | %s |\n", c.App, mdChange(changeLine(c)), len(c.Nodes), waves, c.Estimate)
		}
	}
	for _, c := range rep.Changes {
		if c.Plan == nil {
			continue
		}
		fmt.Fprintf(w, "\n#### `%s`: %s\n\n", c.App, mdChange(changeLine(c)))
		budget := ""
		if c.Plan.MaxFailures > 0 {
			budget = fmt.Sprintf(", up to %d failed node(s) skipped (`maxFailures`)", c.Plan.MaxFailures)
		}
		fmt.Fprintf(w, "Strategy `%s`, %d node(s), estimated %s%s.\n\n", c.Plan.Strategy, len(c.Nodes), c.Estimate, budget)
		for _, s := range c.Plan.Stages {
			fmt.Fprintf(w, "- %s\n", reconciler.StageText(s))
		}
		if len(c.Plan.Stages) > 0 {
			fmt.Fprintln(w)
		}
		if len(c.Plan.Waves) > 0 {
			fmt.Fprintln(w, "| wave | nodes |")
			fmt.Fprintln(w, "|---|---|")
			for k, wave := range c.Plan.Waves {
				fmt.Fprintf(w, "| %d | %s |\n", k+1, strings.Join(wave, ", "))
			}
			fmt.Fprintln(w)
		}
		if a := approvalLine(*c.Plan); a != "" {
			fmt.Fprintf(w, "Approval: %s.\n\n", a)
		}
		writeGatesMarkdown(w, *c.Plan)
		for _, warn := range c.Warnings {
			fmt.Fprintf(w, "> **Warning:** %s\n", warn)
		}
	}
	if len(rep.Signatures) > 0 {
		fmt.Fprintln(w, "\n#### Signatures\n\n| app | version | result | swap |\n|---|---|---|---|")
		for _, s := range rep.Signatures {
			fmt.Fprintf(w, "| `%s` | %s | %s: %s | %s |\n", s.App, s.Version, okWord(s.OK), s.Detail, orDash(reconciler.SwapText(s.Swap)))
		}
	}
	if len(rep.Holds) > 0 {
		fmt.Fprintln(w, "\n#### Holds and pins\n\n| node | change |\n|---|---|")
		for _, h := range rep.Holds {
			fmt.Fprintf(w, "| `%s` | %s |\n", h.Node, strings.Join(h.Changes, "; "))
		}
	}
	printCommitSignatures(w, rep.Commits, true)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "\n_Note: %s_\n", n)
	}
}

func mdChange(s string) string { return strings.ReplaceAll(s, " -> ", " → ") }
