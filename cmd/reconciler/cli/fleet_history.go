package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// historyEntry is one change of one app on the tracked branch.
type historyEntry struct {
	Commit  string    `json:"commit"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	App     string    `json:"app"`
	Kind    string    `json:"kind"` // upgrade, downgrade, rollback, pause, resume, edited, added, removed
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Outcome string    `json:"outcome,omitempty"` // of the rollout the commit started
	Reason  string    `json:"reason,omitempty"`
	Subject string    `json:"subject"`
}

func newHistoryCmd(e *env) *cobra.Command {
	f := &repoFlags{}
	var limit, scan int
	c := &cobra.Command{
		Use:   "history [APP]",
		Short: "List upgrades and rollbacks from the Git history and rollout records",
		Long: `history walks the tracked branch (first parents, newest first) and lists each
commit that changed an app: upgrades, downgrades, rollbacks (with the failed
commit and the reason from their trailers), pauses and resumes, with the
commit, author, time and the outcome of the rollout it started.`,
		Example: `  reconciler history
  reconciler history web --limit 5 --output json`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			h, err := f.openReader(c.Context(), e)
			if err != nil {
				return err
			}
			app := ""
			if len(args) == 1 {
				app = args[0]
			}
			entries, err := history(c.Context(), h, app, limit, scan)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return writeJSON(e, entries)
			}
			printHistory(e, entries)
			return nil
		},
	}
	f.register(c)
	c.Flags().IntVar(&limit, "limit", 20, "at most this many entries")
	c.Flags().IntVar(&scan, "scan", 500, "at most this many commits walked")
	return c
}

// history lists the app changes on the tracked branch, newest first.
func history(ctx context.Context, h *fleetHandles, app string, limit, scan int) ([]historyEntry, error) {
	tip, err := h.desired.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch %s of %s: %w", h.flags.branch, h.url, err)
	}
	outcomes := map[string]map[string]*reconciler.Rollout{} // app -> rollout id -> rollout
	entries := []historyEntry{}
	c, err := h.desired.CommitObject(tip)
	for n := 0; err == nil && n < scan && len(entries) < limit; n++ {
		var parent *object.Commit
		if c.NumParents() > 0 {
			parent, err = c.Parent(0)
			if err != nil {
				return nil, fmt.Errorf("history of %s: %w", h.url, err)
			}
		}
		changes, cerr := commitChanges(h, c, parent)
		if cerr != nil {
			return nil, cerr
		}
		for _, ch := range changes {
			if app != "" && ch.App != app {
				continue
			}
			entries = append(entries, entryOf(ctx, h, c, ch, outcomes))
		}
		if parent == nil {
			break
		}
		c = parent
	}
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", h.url, err)
	}
	if len(entries) > limit {
		entries = entries[:limit]
	}
	return entries, nil
}

// commitChanges compares a commit's specs with its parent's. A commit whose
// specs do not load is skipped (it was never applied).
func commitChanges(h *fleetHandles, c, parent *object.Commit) ([]reconciler.AppChange, error) {
	head, err := h.load(c.Hash)
	if err != nil {
		return nil, nil
	}
	var base *spec.Fleet
	if parent != nil {
		if base, err = h.load(parent.Hash); err != nil {
			base = nil
		}
	}
	return reconciler.Diff(base, head, nil, reconciler.DiffOptions{}), nil
}

func entryOf(ctx context.Context, h *fleetHandles, c *object.Commit, ch reconciler.AppChange, outcomes map[string]map[string]*reconciler.Rollout) historyEntry {
	e := historyEntry{Commit: c.Hash.String(), Author: c.Author.Name, Time: c.Author.When, App: ch.App,
		Kind: ch.Kind, From: ch.From, To: ch.To, Subject: strings.SplitN(c.Message, "\n", 2)[0]}
	tr := fleetrepo.ParseTrailers(c.Message)
	switch {
	case tr.RollbackOf != "":
		e.Kind, e.Reason = "rollback", tr.Reason
	case ch.Kind == reconciler.ChangeEdited && slices.Equal(ch.Fields, []string{"paused"}):
		e.Kind = "resume"
		if strings.Contains(strings.ToLower(e.Subject), "pause") && !strings.Contains(strings.ToLower(e.Subject), "resume") {
			e.Kind = "pause"
		}
	}
	if _, ok := outcomes[ch.App]; !ok {
		outcomes[ch.App] = rolloutsOf(ctx, h, ch.App)
	}
	if r := outcomes[ch.App][e.Commit]; r != nil {
		e.Outcome = r.Outcome
		if e.Outcome == reconciler.OutcomeNone {
			e.Outcome = "progressing"
		}
		if e.Reason == "" {
			e.Reason = r.Reason
		}
	}
	return e
}

// rolloutsOf folds every rollout in an app's record, by id. An unreadable
// record leaves outcomes blank rather than failing the history.
func rolloutsOf(ctx context.Context, h *fleetHandles, app string) map[string]*reconciler.Rollout {
	out := map[string]*reconciler.Rollout{}
	events, err := h.shared.Record(ctx, app)
	if err != nil {
		return out
	}
	for i, ev := range events {
		if ev.Type == reconciler.EventStarted {
			out[ev.Rollout] = reconciler.Latest(events[:nextStart(events, i)])
		}
	}
	return out
}

// nextStart is the index of the started event after i, or len(events).
func nextStart(events []reconciler.Event, i int) int {
	for j := i + 1; j < len(events); j++ {
		if events[j].Type == reconciler.EventStarted {
			return j
		}
	}
	return len(events)
}

func printHistory(e *env, entries []historyEntry) {
	if len(entries) == 0 {
		fmt.Fprintln(e.stdout, "no app changes on the tracked branch")
		return
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "COMMIT\tTIME\tAUTHOR\tAPP\tCHANGE\tOUTCOME\tREASON")
	for _, en := range entries {
		change := en.Kind
		switch {
		case en.From == "" && en.To != "":
			change = en.Kind + " " + en.To
		case en.From != en.To:
			change = fmt.Sprintf("%s %s -> %s", en.Kind, orDash(en.From), orDash(en.To))
		}
		fmt.Fprintf(tw, "%.12s\t%s\t%s\t%s\t%s\t%s\t%s\n", en.Commit, en.Time.Format(time.DateTime),
			en.Author, en.App, change, orDash(en.Outcome), en.Reason)
	}
	tw.Flush()
}

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
		Use:     "versions APP",
		Short:   "List an app's versions: named in history and installed on nodes",
		Example: `  reconciler versions web --output json`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			h, err := f.openReader(c.Context(), e)
			if err != nil {
				return err
			}
			vs, err := versions(c.Context(), h, args[0])
			if err != nil {
				return err
			}
			if f.output == "json" {
				return writeJSON(e, vs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSET BY\tRUNNING ON\tINSTALLED ON\tRUNTIME\tFAILED")
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Version, orDash(shortList(v.Commits)),
					orDash(strings.Join(v.Nodes, ", ")), orDash(strings.Join(v.Installed, ", ")),
					orDash(strings.Join(v.Runtime, ", ")), v.Failed)
			}
			return tw.Flush()
		},
	}
	f.register(c)
	return c
}

func versions(ctx context.Context, h *fleetHandles, app string) ([]versionInfo, error) {
	entries, err := history(ctx, h, app, 1000, 1000)
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
		return nil, errors.New("no version of " + app + " in the history or on any node")
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
