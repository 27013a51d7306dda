package cli

import (
	"context"
	"errors"
	"fmt"
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

// History kinds besides reconciler's change kinds (upgrade, downgrade,
// edited, added, removed).
const (
	kindRollback = "rollback"
	kindPause    = "pause"
	kindResume   = "resume"
	// kindInvalid: a commit whose specs do not validate; agents refused it
	// and kept what they ran. It concerns every app (App is "").
	kindInvalid = "invalid"
	// kindFixed: the first valid commit after invalid ones; agents apply
	// the specs again from there.
	kindFixed = "fixed"
)

// historyEntry is one change of one app on the tracked branch (or, for
// invalid and fixed, of the whole fleet: App "").
type historyEntry struct {
	Commit  string    `json:"commit"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	App     string    `json:"app"`
	Kind    string    `json:"kind"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Outcome string    `json:"outcome,omitempty"` // of the rollout the commit started
	Reason  string    `json:"reason,omitempty"`  // the Reconciler-Reason trailer, a rollout's failure, a spec error
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
commit and the reason from their trailers), pauses and resumes (with the
reason given), with the commit, author, time and the outcome of the rollout
it started. A commit whose specs do not validate is listed as "invalid" with
its error (agents refused it), and the commit that made them valid again as
"fixed"; each change is compared with the last valid commit before it.`,
		Example: `  reconciler history
  reconciler history web --limit 5 --output json`,
		Args:              rangeArgs(0, 1),
		ValidArgsFunction: completeApps(e, f),
		RunE: func(c *cobra.Command, args []string) error {
			app := ""
			if len(args) == 1 {
				app = args[0]
			}
			return runReader(c, e, f, func(ctx context.Context, h *fleetHandles) ([]historyEntry, error) {
				return historyOf(ctx, e, h, app, limit, scan)
			}, func(entries []historyEntry) error { printHistory(e, entries); return nil })
		},
	}
	f.register(c)
	c.Flags().IntVar(&limit, "limit", 20, "at most this many entries")
	c.Flags().IntVar(&scan, "scan", 500, "at most this many commits walked")
	return c
}

// historyOf is the history of app ("" for all) for the history command:
// it warns about an invalid tip and refuses an app the fleet never had.
func historyOf(ctx context.Context, e *env, h *fleetHandles, app string, limit, scan int) ([]historyEntry, error) {
	v, err := h.view(ctx)
	if err != nil {
		return nil, err
	}
	v.warn(e)
	entries, err := history(ctx, h, app, limit, scan)
	warnBadRefs(e, h)
	if err != nil || app == "" {
		return entries, err
	}
	if _, err := appOf(v.fleet, app); err != nil && !slices.ContainsFunc(entries, func(en historyEntry) bool { return en.App == app }) {
		return nil, err // not in the fleet and never was: the same error as status
	}
	return entries, nil
}

// specsAt is a commit of the tracked branch with its specs loaded.
type specsAt struct {
	commit *object.Commit
	fleet  *spec.Fleet
	err    *spec.Errors // the specs do not validate
}

// history lists the app changes on the tracked branch, newest first.
func history(ctx context.Context, h *fleetHandles, app string, limit, scan int) ([]historyEntry, error) {
	tip, err := h.desired.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch %s of %s: %w", h.flags.branch, h.url, err)
	}
	walk, err := newCommitWalk(h, tip)
	if err != nil {
		return nil, err
	}
	outcomes := map[string]map[string]*reconciler.Rollout{} // app -> rollout id -> rollout
	entries := []historyEntry{}
	for i := 0; i < scan && len(entries) < limit; i++ {
		changes, err := walk.changesAt(i)
		if err != nil || changes == nil {
			return entries, err
		}
		for _, en := range changes {
			if app == "" || en.App == app || en.App == "" {
				entries = append(entries, withOutcome(ctx, h, en, outcomes))
			}
		}
	}
	if len(entries) > limit {
		entries = entries[:limit]
	}
	return entries, nil
}

// commitWalk walks the tracked branch along first parents from the tip,
// loading each commit's specs once, when first asked for.
type commitWalk struct {
	h      *fleetHandles
	loaded []specsAt
	next   *object.Commit // the next commit to load; nil past the root
}

func newCommitWalk(h *fleetHandles, tip plumbing.Hash) (*commitWalk, error) {
	c, err := h.desired.CommitObject(tip)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", h.url, err)
	}
	return &commitWalk{h: h, next: c}, nil
}

// at is the i-th commit from the tip, nil past the root.
func (w *commitWalk) at(i int) (*specsAt, error) {
	for len(w.loaded) <= i && w.next != nil {
		s := specsAt{commit: w.next}
		fleet, err := w.h.load(w.next.Hash)
		if err != nil && !errors.As(err, &s.err) {
			return nil, err
		}
		s.fleet = fleet
		w.loaded = append(w.loaded, s)
		if w.next.NumParents() == 0 {
			w.next = nil
		} else if w.next, err = w.next.Parent(0); err != nil {
			return nil, fmt.Errorf("history of %s: %w", w.h.url, err)
		}
	}
	if i >= len(w.loaded) {
		return nil, nil
	}
	return &w.loaded[i], nil
}

// changesAt lists the entries of the i-th commit (nil past the root):
// invalid, or its changes since the last valid commit before it, with
// fixed when invalid ones lie between.
func (w *commitWalk) changesAt(i int) ([]historyEntry, error) {
	c, err := w.at(i)
	if err != nil || c == nil {
		return nil, err
	}
	if c.err != nil {
		en := entryBase(c.commit, "", kindInvalid)
		en.Reason = specErrorSummary(c.err)
		return []historyEntry{en}, nil
	}
	var base *spec.Fleet
	broken := false
	for j := i + 1; j <= i+maxInvalidWalk; j++ {
		older, err := w.at(j)
		if err != nil {
			return nil, err
		}
		if older == nil || older.err == nil {
			if older != nil {
				base = older.fleet
			}
			break
		}
		broken = true
	}
	out := []historyEntry{}
	if broken {
		en := entryBase(c.commit, "", kindFixed)
		en.Reason = "the specs validate again: agents apply them from this commit"
		out = append(out, en)
	}
	for _, ch := range reconciler.Diff(base, c.fleet, nil, reconciler.DiffOptions{}) {
		out = append(out, entryOf(c.commit, ch, c.fleet))
	}
	return out, nil
}

func entryBase(c *object.Commit, app, kind string) historyEntry {
	return historyEntry{Commit: c.Hash.String(), Author: c.Author.Name, Time: c.Author.When, App: app,
		Kind: kind, Subject: strings.SplitN(c.Message, "\n", 2)[0]}
}

// entryOf is one app's change at a commit, named by what it does.
func entryOf(c *object.Commit, ch reconciler.AppChange, head *spec.Fleet) historyEntry {
	e := entryBase(c, ch.App, ch.Kind)
	e.From, e.To = ch.From, ch.To
	tr := fleetrepo.ParseTrailers(c.Message)
	e.Reason = tr.Reason // why, as the author said (pause --reason, rollback --reason)
	switch {
	case tr.RollbackOf != "":
		e.Kind = kindRollback
	case ch.Kind == reconciler.ChangeEdited && slices.Equal(ch.Fields, []string{"paused"}):
		e.Kind = kindResume
		if head.Apps[ch.App].Paused {
			e.Kind = kindPause
		}
	}
	return e
}

// withOutcome adds the outcome of the rollout the entry's commit started.
func withOutcome(ctx context.Context, h *fleetHandles, e historyEntry, outcomes map[string]map[string]*reconciler.Rollout) historyEntry {
	if e.App == "" {
		return e
	}
	if _, ok := outcomes[e.App]; !ok {
		outcomes[e.App] = rolloutsOf(ctx, h, e.App)
	}
	if r := outcomes[e.App][e.Commit]; r != nil {
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
			en.Author, orDash(en.App), change, orDash(en.Outcome), en.Reason)
	}
	tw.Flush()
}
