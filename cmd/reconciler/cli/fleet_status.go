package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/reconciler"
)

func newStatusCmd(e *env) *cobra.Command {
	f := &repoFlags{}
	c := &cobra.Command{
		Use:   "status [APP]",
		Short: "Show rollouts now: target, state, waves, nodes, leases",
		Long: `status shows, for one app or every app of the tracked branch, the rollout in
force: its target and state (progressing, paused, complete, failed,
rolled_back), each wave with every node's version and state, the lease
holders and the elapsed time.`,
		Example: `  reconciler status --repo /srv/fleet.git
  reconciler status web --output json`,
		Args:              rangeArgs(0, 1),
		ValidArgsFunction: completeApps(e, f),
		RunE: func(c *cobra.Command, args []string) error {
			h, err := f.openReader(c.Context(), e)
			if err != nil {
				return err
			}
			sts, err := statuses(c.Context(), e, h, args)
			if err != nil {
				return err
			}
			if f.output == "json" {
				if len(args) == 1 {
					return writeJSON(e, sts[0])
				}
				return writeJSON(e, sts)
			}
			for i, st := range sts {
				if i > 0 {
					fmt.Fprintln(e.stdout)
				}
				printStatus(e.stdout, st)
			}
			return nil
		},
	}
	f.register(c)
	return c
}

// statuses computes the status of the named app, or of every app, from the
// last valid specs of the tracked branch. An invalid tip is a warning on
// stderr (and, in JSON, the first of each status's warnings).
func statuses(ctx context.Context, e *env, h *fleetHandles, args []string) ([]reconciler.Status, error) {
	v, err := h.view(ctx)
	if err != nil {
		return nil, err
	}
	v.warn(e)
	names := slices.Sorted(maps.Keys(v.fleet.Apps))
	if len(args) == 1 {
		if _, err := appOf(v.fleet, args[0]); err != nil {
			return nil, err
		}
		names = args
	}
	out, _, err := statusesIn(ctx, h, v, names)
	if err != nil {
		return nil, err
	}
	warnBadRefs(e, h)
	return out, nil
}

// sharedReads are the node reports and rollout records a status was
// computed from.
type sharedReads struct {
	reports map[string]reconciler.NodeReport
	records map[string][]reconciler.Event
}

// statusesIn is the status of each named app of the view (names must be
// its apps), with warnings in each status's Warnings under --output json,
// and what it read. `status` and `ui` share it.
func statusesIn(ctx context.Context, h *fleetHandles, v *fleetView, names []string) ([]reconciler.Status, *sharedReads, error) {
	reports, err := h.reports(ctx)
	if err != nil {
		return nil, nil, err
	}
	reads := &sharedReads{reports: reports, records: map[string][]reconciler.Event{}}
	var out []reconciler.Status
	for _, name := range names {
		app, _ := appOf(v.fleet, name)
		record, err := h.shared.Record(ctx, name)
		if err != nil {
			return nil, nil, fmt.Errorf("read the rollout record of %s: %w", name, err)
		}
		reads.records[name] = record
		leases, err := h.shared.Leases(ctx, name)
		if err != nil {
			return nil, nil, fmt.Errorf("read the leases of %s: %w", name, err)
		}
		st := reconciler.StatusOf(app, record, reports, leases, time.Now())
		st.AddHolds(app, reconciler.InventoryOf(v.fleet.Nodes, reports))
		if v.warning != "" && h.flags.output == "json" {
			st.Warnings = append([]string{v.warning}, st.Warnings...)
		}
		out = append(out, st)
	}
	if h.flags.output == "json" {
		bad := badRefWarnings(h)
		for i := range out {
			out[i].Warnings = append(out[i].Warnings, bad...)
		}
	}
	return out, reads, nil
}

func printStatus(w io.Writer, st reconciler.Status) {
	head := fmt.Sprintf("%s  %s", st.App, st.Target)
	if st.From != "" && st.From != st.Target && st.RolloutTarget == st.Target {
		head = fmt.Sprintf("%s  %s -> %s", st.App, st.From, st.Target)
	}
	fmt.Fprintf(w, "%s  %s", head, st.State)
	switch {
	case st.Rollout != "" && st.AtOnce:
		fmt.Fprintf(w, "  (rollback to %s from %s at once, commit %.12s, %s)", st.RolloutTarget, orDash(st.From), st.Rollout, st.Elapsed)
	case st.Rollout != "" && st.Rollback:
		fmt.Fprintf(w, "  (rollback to %s from %s in waves, commit %.12s, %s)", st.RolloutTarget, orDash(st.From), st.Rollout, st.Elapsed)
	case st.Rollout != "":
		fmt.Fprintf(w, "  (rollout of %s from %s, commit %.12s, %s)", st.RolloutTarget, orDash(st.From), st.Rollout, st.Elapsed)
	}
	fmt.Fprintln(w)
	if st.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", st.Reason)
	}
	for _, n := range slices.Sorted(maps.Keys(st.Untrusted)) {
		fmt.Fprintf(w, "  %s refuses the tip: %s\n", n, st.Untrusted[n])
	}
	if nw := st.NextWave; nw != nil {
		fmt.Fprintf(w, "  wave %d opens in %s (batchDelay)\n", nw.Wave, nw.OpensIn)
	}
	for _, a := range st.Approvals {
		fmt.Fprintf(w, "  approved through wave %d: commit %.12s, %s\n", a.Wave, a.Commit, a.Reason)
	}
	if a := st.Approval; a != nil {
		fmt.Fprintf(w, "  wave %d waits for approval: %s\n", a.Wave, a.Command)
	}
	if b := st.Budget; b != nil && b.MaxFailures > 0 { // without a budget the failure is the rollout's state
		fmt.Fprintf(w, "  failure budget: %d of %d failed nodes spent (maxFailures)\n", b.Failed, b.MaxFailures)
	}
	if g := st.Gate; g != nil && g.At.IsZero() {
		fmt.Fprintf(w, "  no wave starts now: %s; no opening within a year\n", g.Reason)
	} else if g != nil {
		fmt.Fprintf(w, "  no wave starts now: %s; the next can start at %s (in %s, by this machine's clock)\n",
			g.Reason, g.At.Format(time.RFC3339), g.OpensIn)
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	for k, wave := range st.Waves {
		for i, n := range wave {
			label := ""
			if i == 0 {
				label = reconciler.WaveName(k)
			}
			printNode(tw, label, n)
		}
	}
	shown := map[string]bool{}
	for i, n := range st.Others {
		label := ""
		if i == 0 {
			label = "not in plan"
		}
		printNode(tw, label, n)
		shown[n.Node] = true
	}
	for _, w := range st.Waves {
		for _, n := range w {
			shown[n.Node] = true
		}
	}
	label := "held"
	for _, h := range st.Held {
		if !shown[h.Node] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", label, h.Node, "-", reconciler.NodeHeld, h.Reason)
			label = ""
		}
	}
	tw.Flush()
	for _, l := range st.Leases {
		fmt.Fprintf(w, "  lease %d: %s since %s, unchanged for %s (ttl %s)\n",
			l.Slot, l.Holder, l.Acquired.Format(time.TimeOnly), l.Unchanged.Round(time.Second), l.TTL)
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

// printNode is one node's row: label, node, version, state, reason.
func printNode(tw io.Writer, label string, n reconciler.NodeStatus) {
	reason := n.Reason
	if n.Stale {
		reason = strings.TrimSpace("stale: agent not seen (its liveness in the shared state expired); " + reason)
	}
	fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", label, n.Node, orDash(n.Version), stateText(n.State), reason)
}

// stateText is a state as the text output shows it: JSON's not_started is
// "not started"; the others read as they are.
func stateText(s string) string {
	if s == reconciler.NodeNotStarted {
		return "not started"
	}
	return s
}

func newAuditCmd(e *env) *cobra.Command {
	f := &repoFlags{}
	c := &cobra.Command{
		Use:   "audit APP",
		Short: "Show which nodes run which version of an app",
		Example: `  reconciler audit web
  reconciler audit web --output json   # {"1.1.0": ["node-1", "node-2"], "1.0.0": ["node-3"]}`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeApps(e, f),
		RunE: func(c *cobra.Command, args []string) error {
			var held map[string]string
			return runReader(c, e, f, func(ctx context.Context, h *fleetHandles) (map[string][]string, error) {
				audit, hs, err := auditOf(ctx, e, h, args[0])
				held = hs
				return audit, err
			}, func(audit map[string][]string) error { return printAudit(e, args[0], audit, held) })
		},
	}
	f.register(c)
	return c
}

// printAudit prints the versions and their nodes; a node the inventory
// holds (or pins) is marked "(held)" or "(pinned to V)", and the held nodes
// that report nothing yet are listed apart. The JSON keeps the plain map.
func printAudit(e *env, app string, audit map[string][]string, held map[string]string) error {
	if len(audit) == 0 {
		fmt.Fprintf(e.stdout, "no node reports running %s\n", app)
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNODES")
		for _, v := range slices.Sorted(maps.Keys(audit)) {
			fmt.Fprintf(tw, "%s\t%s\n", orDash(v), strings.Join(markHeld(audit[v], held), ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	listed := map[string]bool{}
	for _, nodes := range audit {
		for _, n := range nodes {
			listed[n] = true
		}
	}
	for _, n := range slices.Sorted(maps.Keys(held)) {
		if !listed[n] {
			fmt.Fprintf(e.stdout, "%s: %s, reports nothing yet\n", n, held[n])
		}
	}
	return nil
}

// markHeld returns nodes with each held one followed by why: "node-2 (held
// in the inventory)".
func markHeld(nodes []string, held map[string]string) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n
		if why, ok := held[n]; ok {
			out[i] = fmt.Sprintf("%s (%s)", n, why)
		}
	}
	return out
}

// auditOf is which nodes run which version of app. An app neither in the
// last valid specs nor on any node is the same error as status gives.
// held maps the nodes the inventory holds from app's version (held, or
// pinned to another) to why.
func auditOf(ctx context.Context, e *env, h *fleetHandles, app string) (audit map[string][]string, held map[string]string, err error) {
	v, err := h.view(ctx)
	if err != nil {
		return nil, nil, err
	}
	v.warn(e)
	reports, err := h.reports(ctx)
	if err != nil {
		return nil, nil, err
	}
	audit = reconciler.Audit(app, reports)
	spec, err := appOf(v.fleet, app)
	if err != nil && len(audit) == 0 {
		return nil, nil, err
	}
	if err == nil {
		held = map[string]string{}
		for _, hn := range reconciler.PlanWaves(spec, reconciler.InventoryOf(v.fleet.Nodes, reports)).Held {
			held[hn.Node] = hn.Reason
		}
	}
	return audit, held, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
