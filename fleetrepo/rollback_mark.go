package fleetrepo

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/fleetops/reconciler/reconciler"
)

// revertLine is the line `git revert` writes in its commit message.
var revertLine = regexp.MustCompile(`(?m)^This reverts commit ([0-9a-f]{40})\b`)

// maxMarkWalk bounds how many commits RollbackMarkOf looks back for the
// one that set the app's version.
const maxMarkWalk = 20

// RollbackMarkOf reports whether the app's version at commit was set by a
// rollback, which agents apply at once (docs/rollouts.md). It follows first
// parents from commit (up to maxMarkWalk) to the commit that changed the
// app's version, so a pause, a resume or another app's commit pushed on top
// of a rollback does not hide it. That commit is a rollback when it carries
// a Reconciler-Rollback-Of trailer (written by `reconciler rollback` or by
// an agent) for this app, or is a `git revert` of a commit that was not
// itself a rollback (reverting a rollback re-applies an upgrade). A trailer
// Reconciler-Rollout: waves keeps the waves. nil when it is no rollback. It
// reads objects only: agents call it under Desired.View.
func RollbackMarkOf(repo *git.Repository, commit plumbing.Hash, app string) (*reconciler.RollbackMark, error) {
	h := commit
	for range maxMarkWalk {
		c, err := repo.CommitObject(h)
		if err != nil {
			return nil, fmt.Errorf("read commit %s to see whether it rolls %s back: %w", short(h), app, err)
		}
		changed, err := versionChanged(repo, c, app)
		if err != nil {
			return nil, err
		}
		if changed {
			return markOf(repo, c, app), nil
		}
		if len(c.ParentHashes) == 0 {
			return nil, nil
		}
		h = c.ParentHashes[0]
	}
	return nil, nil
}

// markOf says whether c, which changed app's version, is a rollback of it.
func markOf(repo *git.Repository, c *object.Commit, app string) *reconciler.RollbackMark {
	t := ParseTrailers(c.Message)
	if t.App != "" && t.App != app {
		return nil
	}
	of := t.RollbackOf
	if of == "" {
		m := revertLine.FindStringSubmatch(c.Message)
		if m == nil {
			return nil
		}
		of = m[1]
		if rc, err := repo.CommitObject(plumbing.NewHash(of)); err == nil {
			rt := ParseTrailers(rc.Message)
			if rt.RollbackOf != "" || revertLine.MatchString(rc.Message) || (rt.App != "" && rt.App != app) {
				return nil
			}
		}
	}
	waves := strings.EqualFold(t.Rollout, RolloutWaves)
	if !waves && !hadVersion(repo, c, app) {
		// A version the branch never had is no return to what ran: the
		// trailers alone must not send it to every node at once.
		waves = true
	}
	return &reconciler.RollbackMark{Of: of, Waves: waves}
}

// maxHistoryWalk bounds how many first-parent commits hadVersion reads.
const maxHistoryWalk = 500

// hadVersion reports whether an ancestor of c (first parents, up to
// maxHistoryWalk) gave app the version c gives it, as written. Unknown
// (unreadable, beyond the bound) counts as no: the rollback keeps its waves.
func hadVersion(repo *git.Repository, c *object.Commit, app string) bool {
	want := versionAt(c, app)
	if want == "" {
		return false
	}
	for range maxHistoryWalk {
		if len(c.ParentHashes) == 0 {
			return false
		}
		p, err := repo.CommitObject(c.ParentHashes[0])
		if err != nil {
			return false
		}
		if versionAt(p, app) == want {
			return true
		}
		c = p
	}
	return false
}

// versionAt is app's version leaf as written in c's .cue files, "" when
// none names it.
func versionAt(c *object.Commit, app string) string {
	files, err := c.Files()
	if err != nil {
		return ""
	}
	defer files.Close()
	v := ""
	_ = files.ForEach(func(f *object.File) error {
		if !strings.HasSuffix(f.Name, ".cue") {
			return nil
		}
		src, err := fileBytes(f)
		if err != nil || !bytes.Contains(src, []byte(app)) {
			return nil // parsing only the files that can name app
		}
		if l, err := appLeaves(src, app); err == nil && l["version"] != "" {
			v = l["version"]
			return storer.ErrStop
		}
		return nil
	})
	return v
}

// versionChanged reports whether commit c changed app's version (as
// written) against its first parent; a root commit sets it.
func versionChanged(repo *git.Repository, c *object.Commit, app string) (bool, error) {
	if len(c.ParentHashes) == 0 {
		return true, nil
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
		if a, b := leavesOf(from, app), leavesOf(to, app); a["version"] != b["version"] {
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
