package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5"

	"github.com/fleetops/reconciler/fleetrepo"
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

// diffApproval is an approval commit in a diff's range.
type diffApproval struct {
	App     string `json:"app"`
	Rollout string `json:"rollout"` // the rollout's commit (Reconciler-Promote)
	Wave    int    `json:"wave"`    // counted from 1: gated waves up to it open
	Commit  string `json:"commit"`
	Author  string `json:"author"`
}

func (a diffApproval) text() string {
	return fmt.Sprintf("approval: `%s` waves up to %d of the rollout of commit %.12s (commit %.12s by %s)", a.App, a.Wave, a.Rollout, a.Commit, a.Author)
}

// approvalsIn lists the approval commits among head's first-parent commits
// since its merge base with base, newest first (none on an unreadable
// range: the commit list says why).
func approvalsIn(repo *git.Repository, baseRev, headRev string) []diffApproval {
	commits, err := rangeCommits(repo, baseRev, headRev)
	if err != nil {
		return nil
	}
	var out []diffApproval
	for _, c := range commits {
		t := fleetrepo.ParseTrailers(c.Message)
		w, err := strconv.Atoi(t.Wave)
		if t.Promote == "" || t.App == "" || err != nil || w < 1 {
			continue
		}
		out = append(out, diffApproval{App: t.App, Rollout: t.Promote, Wave: w, Commit: c.Hash.String(), Author: c.Author.Name})
	}
	return out
}
