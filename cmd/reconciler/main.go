// Command reconciler is the single binary of reconciler: the node agent and
// the operator's command line. See README.md.
package main

import (
	"os"

	"github.com/fleetops/reconciler/cmd/reconciler/cli"
)

func main() { os.Exit(cli.Main()) }
