package cli

import "github.com/spf13/cobra"

// agentCommands builds agent. Not built yet (issue 5).
func agentCommands(e *env) []*cobra.Command { return nil }
