package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetops/reconciler/reconciler"
)

// approvalLine says which waves of a plan wait for an approval commit, ""
// when none does: "waves 2, 3 wait for `reconciler promote web`
// (rollout.approve: each-wave)".
func approvalLine(p reconciler.Plan) string {
	if len(p.Gated) == 0 {
		return ""
	}
	var waves []string
	for _, k := range p.Gated {
		waves = append(waves, strconv.Itoa(k))
	}
	what := "wave " + waves[0] + " waits"
	if len(waves) > 1 {
		what = "waves " + strings.Join(waves, ", ") + " wait"
	}
	return fmt.Sprintf("%s for `reconciler promote %s` (rollout.approve: %s)", what, p.App, p.Approve)
}
