package cli

import (
	"context"
	"errors"

	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/fleetrepo"
)

// rollbackCommitter writes an agent's rollback commits on the tracked branch.
func rollbackCommitter(desired *fleetrepo.Desired, node string) rollout.RollbackFunc {
	return func(ctx context.Context, req rollout.RollbackRequest) (string, error) {
		return "", errors.New("rollback commits are not wired yet")
	}
}
