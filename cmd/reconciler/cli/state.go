package cli

import "github.com/spf13/cobra"

// stateCommands builds leases. Not built yet (issue 4).
func stateCommands(e *env) []*cobra.Command { return nil }
