package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
)

// rollbackOptions are rollback's own flags.
type rollbackOptions struct {
	to    string
	waves bool // keep the waves and leases (Reconciler-Rollout: waves)
	force bool // roll back to a version neither the history nor a node knows
	push  bool // accepted for symmetry with upgrade: rollback always commits
}

func newRollbackCmd(e *env) *cobra.Command {
	w := &writeFlags{}
	o := &rollbackOptions{}
	c := &cobra.Command{
		Use:   "rollback APP [--to VERSION] [--waves] [--force]",
		Short: "Write a rollback commit (applied by every node at once, without waves)",
		Long: `rollback commits, to the tracked branch, the app's spec as it was when the
fleet ran the version before the current one (the latest rollout's "from";
a revert when the commit that set the current version changed only this app),
with trailers naming the commit rolled back and the reason. With --to it sets
that version instead: one the app's history or a node knows (reconciler
versions APP), unless --force.

Agents apply a rollback at once: every targeted node converges now, without
leases, waves, batchDelay or a pause, and the rollout record says so
("rollback": true, "atOnce": true). --waves keeps the careful path: the
rollback rolls in waves under leases like an upgrade (trailer
Reconciler-Rollout: waves). The rolled-back version is remembered and
reconciler diff warns when a change targets it again.`,
		Example: `  reconciler rollback web --reason "p99 latency doubled"
  reconciler rollback web --to 1.0.0 --push
  reconciler rollback web --to 1.0.0 --waves`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeApps(e, &w.repoFlags),
		RunE: func(c *cobra.Command, args []string) error {
			if err := w.checkOutput(); err != nil {
				return err
			}
			if c.Flags().Changed("to") && o.to == "" {
				return &usageError{errors.New(`--to "": want a version (leave the flag out to go back to the version the fleet ran before)`)}
			}
			return runRollback(c.Context(), e, w, args[0], *o)
		},
	}
	w.register(c)
	fl := c.Flags()
	fl.StringVar(&o.to, "to", "", "the version to go back to (default: the one the fleet ran before the current)")
	fl.BoolVar(&o.waves, "waves", false, "roll back in waves under leases, like an upgrade, instead of at once")
	fl.BoolVar(&o.force, "force", false, "with --to: accept a version neither the app's history nor any node knows")
	fl.BoolVar(&o.push, "push", false, "commit to the tracked branch (what rollback always does; accepted like upgrade's)")
	return c
}

func runRollback(ctx context.Context, e *env, w *writeFlags, app string, o rollbackOptions) error {
	h, id, tip, cur, err := w.openApp(ctx, e, app)
	if err != nil {
		return err
	}
	atOnce := !o.waves
	res := commitResult{App: app, Action: "rollback", From: cur.Version, To: o.to, Branch: w.branch, Repo: h.url, AtOnce: &atOnce}
	if o.to == cur.Version {
		res.Note = fmt.Sprintf("%s already targets %s on %s: nothing to roll back", app, o.to, w.branch)
		return res.report(e, w.output)
	}
	if o.to != "" && !o.force {
		if err := knownVersion(ctx, e, h, app, cur.Version, o.to); err != nil {
			return err
		}
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
	if o.to == "" {
		ran := fleetRan(ctx, h, app, cur.Version)
		if !o.force {
			// The default target passes the check --to does: without a
			// record, it is the version before the commit that set the
			// current one, which may be a version that just failed.
			if to := defaultTarget(h, ran, setBy, app); to != "" {
				if err := knownVersion(ctx, e, h, app, cur.Version, to); err != nil {
					return fmt.Errorf("roll back %s from %s: %w", app, cur.Version, err)
				}
			}
		}
		commit, err = h.desired.Rollback(ctx, fleetrepo.RollbackRequest{App: app, Failed: setBy,
			Version: cur.Version, To: ran, Reason: reason, Author: id, Waves: o.waves})
	} else {
		msg := w.message
		if msg == "" {
			msg = fmt.Sprintf("%s: roll back from %s to %s", app, cur.Version, o.to)
		}
		tr := fleetrepo.Trailers{From: cur.Version, To: o.to, Reason: reason, RollbackOf: setBy.String()}
		if o.waves {
			tr.Rollout = fleetrepo.RolloutWaves
		}
		commit, err = h.desired.EditApp(ctx, fleetrepo.AppChange{Expect: tip, App: app,
			Set: map[string]any{"version": o.to}, Message: msg, Author: id, Trailers: tr})
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
	res.Next = "agents apply it at once on every targeted node (no waves, no leases)"
	switch {
	case o.waves:
		res.Next = "agents roll it out in waves under leases, like an upgrade (--waves)"
	case !rollsAtOnce(h, commit, app):
		atOnce = false
		res.Next = fmt.Sprintf("agents roll it out in waves under leases: %s %s is no version the branch had before (docs/rollouts.md)", app, res.To)
	}
	return res.report(e, w.output)
}

// rollsAtOnce reports whether agents will apply the rollback commit at
// once, as they read it (fleetrepo.RollbackMarkOf).
func rollsAtOnce(h *fleetHandles, commit plumbing.Hash, app string) bool {
	var m *reconciler.RollbackMark
	err := h.desired.View(func(r *git.Repository) error {
		var err error
		m, err = fleetrepo.RollbackMarkOf(r, commit, app)
		return err
	})
	return err == nil && m != nil && !m.Waves
}

// defaultTarget is the version a rollback without --to restores: ran when
// the record says, else the app's version before setBy ("" when unknown).
func defaultTarget(h *fleetHandles, ran string, setBy plumbing.Hash, app string) string {
	if ran != "" {
		return ran
	}
	c, err := h.desired.CommitObject(setBy)
	if err != nil || len(c.ParentHashes) == 0 {
		return ""
	}
	v, err := h.desired.AppVersion(c.ParentHashes[0], app)
	if err != nil {
		return ""
	}
	return v
}

// knownVersion refuses a rollback to a version that neither the app's
// history on the tracked branch nor any node (running it, or keeping it as
// the previous version) knows, or whose rollout failed and that runs on no
// node: a typo, a release never tried or one the fleet refused would reach
// every node at once. The error lists the versions there are.
func knownVersion(ctx context.Context, e *env, h *fleetHandles, app, current, to string) error {
	vs, err := versions(ctx, e, h, app)
	if err != nil {
		return fmt.Errorf("list the versions %s can roll back to (--force skips the check): %w", app, err)
	}
	var possible []string
	var failed *versionInfo
	for _, v := range vs {
		switch {
		case v.Version == to && !failedNowhere(v):
			return nil
		case v.Version == to:
			failed = &v
		case v.Version != current && !failedNowhere(v):
			possible = append(possible, v.Version)
		}
	}
	list := "none"
	if len(possible) > 0 {
		list = strings.Join(possible, ", ")
	}
	if failed != nil {
		return fmt.Errorf("%s %s failed its rollout (%s) and runs on no node: a rollback to it would reach every node at once; possible versions: %s (reconciler versions %s); --force rolls back to it anyway",
			app, to, failed.Failed, list, app)
	}
	return fmt.Errorf("%s %s is not in the history of %s nor installed on any node: possible versions: %s (reconciler versions %s); --force rolls back to it anyway",
		app, to, h.flags.branch, list, app)
}

// failedNowhere reports whether v's rollout failed or was rolled back and
// no node runs it now: a version the fleet refused, not one it ran.
func failedNowhere(v versionInfo) bool { return v.Failed != "" && len(v.Nodes) == 0 }

// fleetRan is the version the fleet ran before current: the From of the
// latest rollout, when it moved to current; "" (the version before the
// commit that set current) when the record does not say.
func fleetRan(ctx context.Context, h *fleetHandles, app, current string) string {
	events, err := h.shared.Record(ctx, app)
	if err != nil {
		return ""
	}
	// The newest rollout to current that did not fail: a later rollout
	// that failed and was rolled back to current (without a started of
	// its own) is not how the fleet came to run current, and its target is
	// the last place to go back to.
	end := len(events) // the rollout started at i ends before end
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type != reconciler.EventStarted {
			continue
		}
		r := reconciler.Latest(events[:end])
		end = i
		if r.Target != current || r.Outcome == reconciler.OutcomeFailed || r.Outcome == reconciler.OutcomeRolledBack {
			continue
		}
		if r.From != current {
			return r.From
		}
		return ""
	}
	return ""
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
