package cli

import (
	"context"
	"errors"

	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/fleetrepo"
)

// rollbackCommitter writes an agent's rollback commits on the tracked
// branch, as that node. Another agent's rollback, or a person's newer
// commit, means there is nothing to do.
func rollbackCommitter(desired *fleetrepo.Desired, node string) rollout.RollbackFunc {
	return func(ctx context.Context, req fleetrepo.RollbackRequest) (string, error) {
		req.Author = fleetrepo.Identity{Name: node}
		h, err := desired.Rollback(ctx, req)
		if errors.Is(err, fleetrepo.ErrAlreadyRolledBack) || errors.Is(err, fleetrepo.ErrSuperseded) {
			return "", errors.Join(rollout.ErrNoRollback, err)
		}
		if err != nil {
			return "", err
		}
		return h.String(), nil
	}
}
