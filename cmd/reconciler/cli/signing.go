package cli

import "github.com/spf13/cobra"

// signingCommands builds keygen, sign, verify and release. Not built yet (issue 3).
func signingCommands(e *env) []*cobra.Command { return nil }
