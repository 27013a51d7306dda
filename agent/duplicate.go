package agent

import (
	"errors"

	"github.com/fleetops/reconciler/fleetrepo"
)

// noteDuplicate records that another agent writes this node's report (two
// agents with one node name, fleetrepo.ErrDuplicateNode): from then on this
// agent refuses to act until it is restarted, saying so loudly (an ERROR
// line, the report's conflict, a degraded /healthz). Both agents find out,
// as each one's reports move the chain under the other. Acting on would
// let both drive one node's leases and rollout steps.
func (a *Agent) noteDuplicate(err error) bool {
	var dup *fleetrepo.DuplicateNodeError
	if !errors.As(err, &dup) {
		return false
	}
	msg := dup.Error()
	if a.dup.Swap(&msg) == nil {
		a.log.Error("refusing to act: another agent uses this node name", "err", msg)
	}
	return true
}

// duplicate is the reason this agent refuses to act, "" when it does not.
func (a *Agent) duplicate() string {
	if p := a.dup.Load(); p != nil {
		return *p
	}
	return ""
}
