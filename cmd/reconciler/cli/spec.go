package cli

import "github.com/spf13/cobra"

// specCommands builds validate, export and plan. Not built yet (issue 2).
func specCommands(e *env) []*cobra.Command { return nil }
