package cli

import "github.com/spf13/cobra"

// fleetCommands builds the operator commands. Not built yet (issue 6).
func fleetCommands(e *env) []*cobra.Command { return nil }
