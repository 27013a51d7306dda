package cli

import "github.com/spf13/cobra"

// fleetCommands builds the operator commands: the ones that read the fleet's
// state (status, audit, history, versions, diff) and the ones that write a
// commit to the tracked branch (upgrade, rollback, pause, resume, promote).
func fleetCommands(e *env) []*cobra.Command {
	return []*cobra.Command{
		newUpgradeCmd(e), newRollbackCmd(e), newPauseCmd(e, true), newPauseCmd(e, false), newPromoteCmd(e),
		newStatusCmd(e), newAuditCmd(e), newHistoryCmd(e), newEventsCmd(e), newVersionsCmd(e), newDiffCmd(e),
	}
}
