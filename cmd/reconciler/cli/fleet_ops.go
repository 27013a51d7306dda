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
		Args: exactArgs(1),
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
	h, id, tip, fleet, err := w.open(ctx, e)
	if err != nil {
		return err
	}
	cur, err := appOf(fleet, app)
	if err != nil {
		return err
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
	fmt.Fprintf(e.stderr, "committed %.12s to %s: roll back %s from %s\n", commit.String(), w.branch, app, cur.Version)
	return nil
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
		Use:     verb + " APP",
		Short:   what,
		Example: fmt.Sprintf("  reconciler %s web --reason \"investigating errors in eu\"", verb),
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := w.checkOutput(); err != nil {
				return err
			}
			h, id, tip, fleet, err := w.open(c.Context(), e)
			if err != nil {
				return err
			}
			app, err := appOf(fleet, args[0])
			if err != nil {
				return err
			}
			if app.Paused == pause {
				fmt.Fprintf(e.stderr, "%s is already %sd: nothing to commit\n", app.Name, verb)
				return nil
			}
			commit, err := h.desired.SetPaused(c.Context(), tip, app.Name, pause, w.reason, id)
			if err != nil {
				return fmt.Errorf("%s %s: %w", verb, app.Name, err)
			}
			fmt.Fprintf(e.stderr, "committed %.12s to %s: %s %s\n", commit.String(), w.branch, verb, app.Name)
			return nil
		},
	}
	w.register(c)
	return c
}
