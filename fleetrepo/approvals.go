package fleetrepo

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/reconciler"
)

// maxApprovalWalk bounds how many commits ApprovalsOf reads between a tip
// and the rollout's commit.
const maxApprovalWalk = 1000

// ApprovalsOf lists the approval commits of app's rollout (its commit id)
// in the history of tip back to that commit, oldest first: commits whose
// trailers say Reconciler-App: app, Reconciler-Promote: rollout and
// Reconciler-Wave: N (counted from 1). Every parent is followed, so an
// approval merged from a pull request's branch counts; the walk stops at
// the rollout's commit and after maxApprovalWalk commits. A malformed
// Reconciler-Wave is no approval. It reads objects only: agents call it
// under Desired.View.
func ApprovalsOf(repo *git.Repository, tip plumbing.Hash, app, rollout string) ([]reconciler.Approval, error) {
	stop := plumbing.NewHash(rollout)
	var out []reconciler.Approval
	seen := map[plumbing.Hash]bool{tip: true}
	queue := []plumbing.Hash{tip}
	for n := 0; len(queue) > 0 && n < maxApprovalWalk; n++ {
		h := queue[0]
		queue = queue[1:]
		if h == stop {
			continue
		}
		c, err := repo.CommitObject(h)
		if err != nil {
			return nil, fmt.Errorf("read commit %s for approvals of %s: %w", short(h), app, err)
		}
		t := ParseTrailers(c.Message)
		if t.App == app && t.Promote == rollout {
			if w, err := strconv.Atoi(t.Wave); err == nil && w >= 1 {
				out = append(out, reconciler.Approval{Rollout: rollout, Wave: w - 1, Commit: h.String(),
					By: fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email)})
			}
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	slices.Reverse(out)
	return out, nil
}

// Approvals is ApprovalsOf in the handle's cache: the agent's
// rollout.Options.Approvals.
func (d *Desired) Approvals(tip, app, rollout string) ([]reconciler.Approval, error) {
	var list []reconciler.Approval
	err := d.View(func(r *git.Repository) error {
		var err error
		list, err = ApprovalsOf(r, plumbing.NewHash(tip), app, rollout)
		return err
	})
	return list, err
}
