package cli

import (
	"context"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
)

func newRollbackCmd(e *env) *cobra.Command {
	w := &writeFlags{}
	var to string
	c := &cobra.Command{
		Use:   "rollback APP [--to VERSION]",
		Short: "Write a rollback commit (applied by every node at once, without waves)",
		Long: `rollback commits, to the tracked branch, the app's spec as it was before the
commit that set its current version (a revert when that commit changed only
this app), with trailers naming the commit rolled back and the reason. With
--to it sets that version instead. Agents apply a rollback at once, without
waves; the rolled-back version is remembered and reconciler diff warns when
a change targets it again.`,
		Example: `  reconciler rollback web --reason "p99 latency doubled"
  reconciler rollback web --to 1.0.0`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeApps(e, &w.repoFlags),
		RunE: func(c *cobra.Command, args []string) error {
			if err := w.checkOutput(); err != nil {
				return err
			}
			return runRollback(c.Context(), e, w, args[0], to)
		},
	}
	w.register(c)
	c.Flags().StringVar(&to, "to", "", "the version to go back to (default: the one before the current)")
	return c
}

func runRollback(ctx context.Context, e *env, w *writeFlags, app, to string) error {
	h, id, tip, cur, err := w.openApp(ctx, e, app)
	if err != nil {
		return err
	}
	res := commitResult{App: app, Action: "rollback", From: cur.Version, To: to, Branch: w.branch, Repo: h.url}
	if to == cur.Version {
		res.Note = fmt.Sprintf("%s already targets %s on %s: nothing to roll back", app, to, w.branch)
		return res.report(e, w.output)
	}
	setBy, err := commitThatSet(ctx, h, app, cur.Version)
	if err != nil {
		return err
	}
	reason := w.reason
	if reason == "" {
		reason = "manual rollback by " + id.Name
	}
	var commit plumbing.Hash
	if to == "" {
		commit, err = h.desired.Rollback(ctx, fleetrepo.RollbackRequest{App: app, Failed: setBy,
			Version: cur.Version, Reason: reason, Author: id})
	} else {
		msg := w.message
		if msg == "" {
			msg = fmt.Sprintf("%s: roll back from %s to %s", app, cur.Version, to)
		}
		commit, err = h.desired.EditApp(ctx, fleetrepo.AppChange{Expect: tip, App: app,
			Set: map[string]any{"version": to}, Message: msg, Author: id,
			Trailers: fleetrepo.Trailers{From: cur.Version, To: to, Reason: reason, RollbackOf: setBy.String()}})
	}
	if err != nil {
		return fmt.Errorf("roll back %s from %s: %w", app, cur.Version, err)
	}
	if res.To == "" {
		// The version the rollback commit restored, as its specs say.
		if res.To, err = h.desired.AppVersion(commit, app); err != nil {
			return fmt.Errorf("read the version rollback commit %.12s restored: %w", commit.String(), err)
		}
	}
	res.Commit, res.Pushed = commit.String(), true
	res.Message = fmt.Sprintf("roll back %s %s", app, versionMove(cur.Version, res.To))
	return res.report(e, w.output)
}

// commitThatSet is the newest commit on the tracked branch that set app to
// version.
func commitThatSet(ctx context.Context, h *fleetHandles, app, version string) (plumbing.Hash, error) {
	entries, err := history(ctx, h, app, 1000, 1000)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	for _, en := range entries {
		if en.To == version && en.From != version {
			return plumbing.NewHash(en.Commit), nil
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("no commit in the history of %s sets %s to %s: name the version to go back to with --to", h.flags.branch, app, version)
}

func newPauseCmd(e *env, pause bool) *cobra.Command {
	w := &writeFlags{}
	verb, what := "resume", "Write the commit that resumes an app's rollouts"
	if pause {
		verb, what = "pause", "Write the commit that pauses an app's rollouts (nodes in flight finish)"
	}
	c := &cobra.Command{
		Use:               verb + " APP",
		Short:             what,
		Example:           fmt.Sprintf("  reconciler %s web --reason \"investigating errors in eu\"", verb),
		Args:              exactArgs(1),
		ValidArgsFunction: completeApps(e, &w.repoFlags),
		RunE: func(c *cobra.Command, args []string) error {
			if err := w.checkOutput(); err != nil {
				return err
			}
			return runPause(c.Context(), e, w, args[0], pause)
		},
	}
	w.register(c)
	return c
}

// runPause writes the commit that pauses (or resumes) app's rollouts.
func runPause(ctx context.Context, e *env, w *writeFlags, name string, pause bool) error {
	verb := "resume"
	if pause {
		verb = "pause"
	}
	h, id, tip, app, err := w.openApp(ctx, e, name)
	if err != nil {
		return err
	}
	res := commitResult{App: app.Name, Action: verb, Branch: w.branch, Repo: h.url}
	if app.Paused == pause {
		res.Note = fmt.Sprintf("%s is already %sd: nothing to commit", app.Name, verb)
		return res.report(e, w.output)
	}
	commit, err := h.desired.SetPaused(ctx, tip, app.Name, pause, w.reason, id)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, app.Name, err)
	}
	res.Commit, res.Pushed, res.Message = commit.String(), true, verb+" "+app.Name
	return res.report(e, w.output)
}
