package cli

import (
	"context"
	"errors"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/fleetrepo"
)

// rollbackCommitter writes an agent's rollback commits on the tracked
// branch, as that node. Another agent's rollback, or a person's newer
// commit, means there is nothing to do.
func rollbackCommitter(desired *fleetrepo.Desired, node string) rollout.RollbackFunc {
	return func(ctx context.Context, req rollout.RollbackRequest) (string, error) {
		h, err := desired.Rollback(ctx, fleetrepo.RollbackRequest{
			App: req.App, Failed: plumbing.NewHash(req.Rollout), Version: req.Failed, To: req.To,
			Reason: rollbackReason(req), Node: req.Node, Author: fleetrepo.Identity{Name: node},
		})
		if errors.Is(err, fleetrepo.ErrAlreadyRolledBack) || errors.Is(err, fleetrepo.ErrSuperseded) {
			return "", errors.Join(rollout.ErrNoRollback, err)
		}
		if err != nil {
			return "", err
		}
		return h.String(), nil
	}
}

func rollbackReason(req rollout.RollbackRequest) string {
	if req.Node == "" {
		return req.Reason
	}
	return "failed on " + req.Node + ": " + req.Reason
}
