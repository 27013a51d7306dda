package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/reconciler"
)

// versionInfo is one version of an app: where it appears.
type versionInfo struct {
	Version string   `json:"version"`
	Commits []string `json:"commits,omitempty"` // commits that set it
	Nodes   []string `json:"nodes,omitempty"`   // nodes running it
	// Installed lists the nodes that keep it installed: running it, or
	// as the previous version a rollback goes back to.
	Installed []string `json:"installed,omitempty"`
	Failed    string   `json:"failed,omitempty"` // why a rollout of it failed
	// Runtime lists "node: status" where the app's runtime keeps this
	// release (an Erlang VM: permanent, current, old, unpacked).
	Runtime []string `json:"runtime,omitempty"`
}

func newVersionsCmd(e *env) *cobra.Command {
	f := &repoFlags{}
	c := &cobra.Command{
		Use:               "versions APP",
		Short:             "List an app's versions: named in history and installed on nodes",
		Example:           `  reconciler versions web --output json`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeApps(e, f),
		RunE: func(c *cobra.Command, args []string) error {
			return runReader(c, e, f, func(ctx context.Context, h *fleetHandles) ([]versionInfo, error) {
				return versions(ctx, e, h, args[0])
			}, func(vs []versionInfo) error { return printVersions(e, vs) })
		},
	}
	f.register(c)
	return c
}

func printVersions(e *env, vs []versionInfo) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSET BY\tRUNNING ON\tINSTALLED ON\tRUNTIME\tFAILED")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Version, orDash(shortList(v.Commits)),
			orDash(strings.Join(v.Nodes, ", ")), orDash(strings.Join(v.Installed, ", ")),
			orDash(strings.Join(v.Runtime, ", ")), v.Failed)
	}
	return tw.Flush()
}

func versions(ctx context.Context, e *env, h *fleetHandles, app string) ([]versionInfo, error) {
	entries, err := historyOf(ctx, e, h, app, 1000, 1000)
	if err != nil {
		return nil, err
	}
	reports, err := h.reports(ctx)
	if err != nil {
		return nil, err
	}
	byVersion := map[string]*versionInfo{}
	get := func(v string) *versionInfo {
		if byVersion[v] == nil {
			byVersion[v] = &versionInfo{Version: v}
		}
		return byVersion[v]
	}
	for _, en := range entries {
		if en.To != "" {
			get(en.To).Commits = append(get(en.To).Commits, en.Commit)
		}
	}
	for v, nodes := range reconciler.Audit(app, reports) {
		if v != "" {
			get(v).Nodes = nodes
		}
	}
	for _, node := range slices.Sorted(maps.Keys(reports)) {
		a, ok := reports[node].Apps[app]
		for _, v := range []string{a.Version, a.Previous} {
			if ok && v != "" {
				get(v).Installed = append(get(v).Installed, node)
			}
		}
		for _, r := range a.Releases {
			get(r.Version).Runtime = append(get(r.Version).Runtime, node+": "+r.Status)
		}
	}
	if events, err := h.shared.Record(ctx, app); err == nil {
		for v, reason := range reconciler.FailedTargets(events) {
			get(v).Failed = orDash(reason)
		}
	}
	if len(byVersion) == 0 {
		return nil, fmt.Errorf("no version of %s in the history of %s or on any node", app, h.flags.branch)
	}
	out := []versionInfo{}
	for _, v := range slices.SortedFunc(maps.Keys(byVersion), func(a, b string) int { return reconciler.CompareVersions(b, a) }) {
		out = append(out, *byVersion[v])
	}
	return out, nil
}

func shortList(hashes []string) string {
	var s []string
	for _, h := range hashes {
		s = append(s, plumbing.NewHash(h).String()[:12])
	}
	return strings.Join(s, ", ")
}
