package reconciler

import (
	"fmt"

	"github.com/fleetops/reconciler/spec"
)

// Approval gates (rollout.approve, docs/rollouts.md "Approvals"): a gated
// wave opens only after a person's approval commit (reconciler promote),
// which the first agent to see it records as an approved event. The gate
// is the one recorded in the rollout's options, so every agent counts the
// same waves gated whatever its tip.

// RecordedApproval is an approved event of a rollout.
type RecordedApproval struct {
	Wave   int    `json:"wave"` // counted from 1, as in the text: waves up to it are approved
	Commit string `json:"commit"`
	Reason string `json:"reason,omitempty"` // "approved by <the commit's author>"
	Index  int    `json:"-"`                // the event's index in the record
}

// Gated reports whether wave k waits for an approval: the second wave
// with after-canary, every wave after the first with each-wave. A
// rollback is never gated.
func (r *Rollout) Gated(k int) bool {
	if r.IsRollback || k < 1 || k >= len(r.Waves) {
		return false
	}
	switch r.Options.Approve {
	case spec.ApproveAfterCanary:
		return k == 1
	case spec.ApproveEachWave:
		return true
	}
	return false
}

// approvedAt is the record index of the first approved event that covers
// wave k.
func (r *Rollout) approvedAt(k int) (int, bool) {
	for _, a := range r.Approvals {
		if a.Wave >= WaveNumber(k) {
			return a.Index, true
		}
	}
	return 0, false
}

// awaitsApproval reports whether wave k is gated and not approved yet.
func (r *Rollout) awaitsApproval(k int) bool {
	_, approved := r.approvedAt(k)
	return r.Gated(k) && !approved
}

// NextGate is the first gated wave not approved yet (an index), or -1.
func (r *Rollout) NextGate() int {
	for k := range r.Waves {
		if r.awaitsApproval(k) {
			return k
		}
	}
	return -1
}

// ApprovalWait is why a node of app's wave k waits, with the command that
// lets it go.
func ApprovalWait(app string, k int) string {
	return fmt.Sprintf("%s waits for approval: reconciler promote %s --wave %d", WaveName(k), app, WaveNumber(k))
}

// approval is the approved event of the newest approval commit the tip
// has for this rollout that approves a gated wave not yet approved.
func approval(in Input, r *Rollout) (Event, bool) {
	if r.NextGate() < 0 {
		return Event{}, false
	}
	var best *Approval
	for i, a := range in.Approvals {
		if a.Rollout == r.ID && (best == nil || a.Wave > best.Wave) {
			best = &in.Approvals[i]
		}
	}
	if best == nil || !r.awaitsApprovalUpTo(best.Wave) {
		return Event{}, false
	}
	reason := "approved"
	if best.By != "" {
		reason = "approved by " + best.By
	}
	return Event{Type: EventApproved, Wave: best.Wave, Commit: best.Commit, Reason: reason}, true
}

// awaitsApprovalUpTo reports whether a wave up to wave index k waits for
// an approval.
func (r *Rollout) awaitsApprovalUpTo(k int) bool {
	g := r.NextGate()
	return g >= 0 && g <= k
}

// gatedWaves is app's approval gate and the waves (counted from 1) it
// gates in a plan of waves.
func gatedWaves(app spec.App, waves [][]string) (string, []int) {
	r := &Rollout{Waves: waves, Options: flagsOf(app)}
	var gated []int
	for k := range waves {
		if r.Gated(k) {
			gated = append(gated, WaveNumber(k))
		}
	}
	if len(gated) == 0 {
		return "", nil
	}
	return r.Options.Approve, gated
}
