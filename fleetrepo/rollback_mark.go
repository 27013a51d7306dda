package fleetrepo

import (
	"fmt"
	"maps"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/fleetops/reconciler/reconciler"
)

// revertLine is the line `git revert` writes in its commit message.
var revertLine = regexp.MustCompile(`(?m)^This reverts commit ([0-9a-f]{40})\b`)

// RollbackMarkOf reports whether commit is a rollback of app, which agents
// apply at once (docs/rollouts.md): a commit with a Reconciler-Rollback-Of
// trailer (written by `reconciler rollback` or by an agent) for this app, or
// a `git revert` of a commit that changed the app and was not itself a
// rollback (reverting a rollback re-applies an upgrade). A trailer
// Reconciler-Rollout: waves keeps the waves. nil when commit is no rollback
// of app. It reads objects only: agents call it under Desired.View.
func RollbackMarkOf(repo *git.Repository, commit plumbing.Hash, app string) (*reconciler.RollbackMark, error) {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return nil, fmt.Errorf("read commit %s to see whether it rolls %s back: %w", short(commit), app, err)
	}
	t := ParseTrailers(c.Message)
	if t.App != "" && t.App != app {
		return nil, nil
	}
	of := t.RollbackOf
	if of == "" {
		m := revertLine.FindStringSubmatch(c.Message)
		if m == nil {
			return nil, nil
		}
		of = m[1]
		if rc, err := repo.CommitObject(plumbing.NewHash(of)); err == nil {
			rt := ParseTrailers(rc.Message)
			if rt.RollbackOf != "" || revertLine.MatchString(rc.Message) || (rt.App != "" && rt.App != app) {
				return nil, nil
			}
		}
	}
	if t.App == "" {
		changed, err := appChanged(repo, c, app)
		if err != nil || !changed {
			return nil, err
		}
	}
	return &reconciler.RollbackMark{Of: of, Waves: strings.EqualFold(t.Rollout, RolloutWaves)}, nil
}

// appChanged reports whether commit c changed any field of app against its
// first parent.
func appChanged(repo *git.Repository, c *object.Commit, app string) (bool, error) {
	if len(c.ParentHashes) == 0 {
		return false, nil
	}
	p, err := repo.CommitObject(c.ParentHashes[0])
	if err != nil {
		return false, fmt.Errorf("read parent of %s: %w", short(c.Hash), err)
	}
	ta, err := p.Tree()
	if err != nil {
		return false, fmt.Errorf("read tree of %s: %w", short(p.Hash), err)
	}
	tb, err := c.Tree()
	if err != nil {
		return false, fmt.Errorf("read tree of %s: %w", short(c.Hash), err)
	}
	changes, err := object.DiffTree(ta, tb)
	if err != nil {
		return false, fmt.Errorf("diff %s..%s: %w", short(p.Hash), short(c.Hash), err)
	}
	for _, ch := range changes {
		from, to, err := ch.Files()
		if err != nil {
			return false, fmt.Errorf("read the change %s..%s: %w", short(p.Hash), short(c.Hash), err)
		}
		a, b := leavesOf(from, app), leavesOf(to, app)
		if !maps.Equal(a, b) {
			return true, nil
		}
	}
	return false, nil
}

// leavesOf is app's leaves in a .cue file (nil when f is none, or does not
// parse).
func leavesOf(f *object.File, app string) map[string]string {
	if f == nil || !strings.HasSuffix(f.Name, ".cue") {
		return nil
	}
	src, err := fileBytes(f)
	if err != nil {
		return nil
	}
	leaves, err := appLeaves(src, app)
	if err != nil || len(leaves) == 0 {
		return nil
	}
	return leaves
}
