package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
)

// promoteOptions are promote's own flags.
type promoteOptions struct {
	wave   int    // 0: the next gated wave
	branch string // a new branch for a pull request instead of the tracked one
}

func newPromoteCmd(e *env) *cobra.Command {
	w := &writeFlags{}
	o := &promoteOptions{}
	c := &cobra.Command{
		Use:   "promote APP [--wave N]",
		Short: "Write the approval commit that lets a rollout past its approval gate",
		Long: `promote approves the waves of the app's rollout in progress that wait at an
approval gate (rollout.approve: "after-canary" or "each-wave"). It writes an
empty commit to the tracked branch (signed with --sign, as every commit must
be when agents require signatures) whose trailers name the app
(Reconciler-App), the rollout (Reconciler-Promote: its commit) and the wave
(Reconciler-Wave: N, counted from 1); agents record it as an "approved"
event and open the wave. Without --wave it approves the next gated wave;
--wave N approves every gated wave up to N. --branch NAME writes the commit
to a new branch instead, to be merged by a reviewed pull request (a merge
commit, a rebase or a fast-forward all count).`,
		Example: `  reconciler promote web                 # the next gated wave
  reconciler promote web --wave 3 --reason "canary and eu look good"
  reconciler promote web --branch approve-web-wave-2`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeApps(e, &w.repoFlags),
		RunE: func(c *cobra.Command, args []string) error {
			if err := w.checkOutput(); err != nil {
				return err
			}
			if c.Flags().Changed("wave") && o.wave < 2 {
				return &usageError{fmt.Errorf("--wave %d: want a wave after the first (waves count from 1; the first is never gated)", o.wave)}
			}
			if err := checkNewBranch(o.branch, w.branch); err != nil {
				return err
			}
			return runPromote(c.Context(), e, w, args[0], *o)
		},
	}
	w.register(c)
	fl := c.Flags()
	fl.IntVar(&o.wave, "wave", 0, "approve every gated wave up to this one, counted from 1 (default: the next gated wave)")
	fl.StringVar(&o.branch, "branch", "", "commit the approval to this new branch, for a pull request")
	return c
}

// checkNewBranch refuses a --branch that is the tracked branch, a ref or
// no valid branch name ("" is none asked).
func checkNewBranch(branch, tracked string) error {
	switch {
	case branch == "":
		return nil
	case branch == tracked:
		return &usageError{fmt.Errorf("--branch %s is the tracked branch: --branch names a new branch for a pull request; leave it out to commit to %s", branch, tracked)}
	case plumbing.NewBranchReferenceName(branch).Validate() != nil:
		return &usageError{fmt.Errorf("--branch %q: not a valid branch name (git check-ref-format)", branch)}
	}
	return nil
}

func runPromote(ctx context.Context, e *env, w *writeFlags, name string, o promoteOptions) error {
	h, id, tip, app, err := w.openApp(ctx, e, name)
	if err != nil {
		return err
	}
	record, err := h.shared.Record(ctx, app.Name)
	if err != nil {
		return fmt.Errorf("read the rollout record of %s from %s: %w", app.Name, h.shared.URL(), err)
	}
	r := reconciler.Latest(record)
	res := commitResult{App: app.Name, Action: "promote", To: app.Version, Branch: w.branch, Repo: h.url}
	if o.branch != "" {
		res.Branch = o.branch
	}
	switch {
	case r == nil || r.Ended():
		return fmt.Errorf("%s has no rollout in progress: nothing to approve (reconciler status %s)", app.Name, app.Name)
	case r.Target != app.Version:
		return fmt.Errorf("the rollout in progress is of %s %s, but %s targets %s: agents start that one when they see it; promote it then",
			app.Name, r.Target, w.branch, app.Version)
	}
	next := r.NextGate()
	if o.wave > len(r.Waves) {
		return &usageError{fmt.Errorf("--wave %d: the rollout of %s %s has %d waves", o.wave, app.Name, r.Target, len(r.Waves))}
	}
	if next < 0 {
		res.Note = fmt.Sprintf("the rollout of %s %s waits at no approval gate (rollout.approve %q): nothing to commit", app.Name, r.Target, orNoneGate(r.Options.Approve))
		return res.report(e, w.output)
	}
	wave := o.wave
	if wave == 0 {
		wave = reconciler.WaveNumber(next)
	}
	if wave < reconciler.WaveNumber(next) {
		res.Note = fmt.Sprintf("wave %d of %s %s is approved already (the next gate is wave %d): nothing to commit", wave, app.Name, r.Target, reconciler.WaveNumber(next))
		return res.report(e, w.output)
	}
	pending, err := h.desired.Approvals(tip.String(), app.Name, r.ID)
	if err != nil {
		return fmt.Errorf("read the approval commits of %s on %s: %w", app.Name, w.branch, err)
	}
	for _, a := range pending {
		if a.Wave+1 >= wave {
			res.Note = fmt.Sprintf("commit %.12s already approves %s %s up to wave %d; agents record it when they see it: nothing to commit",
				a.Commit, app.Name, r.Target, a.Wave+1)
			return res.report(e, w.output)
		}
	}
	msg := w.message
	if msg == "" {
		msg = fmt.Sprintf("%s: approve the rollout of %s up to wave %d", app.Name, r.Target, wave)
	}
	commit, err := h.desired.Commit(ctx, fleetrepo.CommitRequest{Expect: tip, Message: msg, Author: id, Branch: o.branch,
		Trailers: fleetrepo.Trailers{App: app.Name, Promote: r.ID, Wave: strconv.Itoa(wave), Reason: w.reason}})
	if errors.Is(err, fleetrepo.ErrBranchExists) {
		return fmt.Errorf("promote %s: %w (--branch names a new branch: pick another name)", app.Name, err)
	}
	if err != nil {
		return fmt.Errorf("promote %s: %w", app.Name, err)
	}
	res.Commit, res.Pushed, res.Message = commit.String(), true, msg
	res.Wave = wave
	res.Next = fmt.Sprintf("agents open wave %d when they see it (reconciler status %s)", wave, app.Name)
	if o.branch != "" {
		res.Next = fmt.Sprintf("branch %s is in %s: merge it by a pull request to approve wave %d", o.branch, h.url, wave)
	}
	return res.report(e, w.output)
}

func orNoneGate(gate string) string {
	if gate == "" {
		return "none"
	}
	return gate
}
