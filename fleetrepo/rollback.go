package fleetrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxRollbackAttempts bounds Rollback's fetch-and-retry loop.
const maxRollbackAttempts = 5

// RollbackRequest asks for a rollback commit undoing a failed version.
type RollbackRequest struct {
	App string
	// Failed is the commit that set the failed version (the rollout's id).
	Failed plumbing.Hash
	// Version is the failed version; the tip must still target it.
	// Default: the app's version in Failed.
	Version string
	// To is the version to restore: the one the fleet ran before the
	// failed rollout (its recorded From). The spec restored is the app's
	// as of the newest commit before Failed that set To, so a version
	// committed but never deployed in between is skipped. Default: the
	// version in Failed's parent.
	To     string
	Reason string   // why, e.g. "health check failed on node-eu-1: ..."
	Node   string   // the node that decided it, for the trailer
	Author Identity // default the handle's Identity
	// Waves writes Reconciler-Rollout: waves: agents roll the rollback
	// out in waves under leases instead of at once.
	Waves bool
}

// Rollback commits the app's spec as it was before r.Failed (as of the
// newest commit that set r.To, when given), by
// compare-and-swap on the tip, and only while the tip still targets
// r.Version: rollback commits lose to people. When the failed commit changed
// only this app and nothing touched its file since, the commit is a revert
// of it; otherwise it edits back each of the app's fields that the failed
// commit changed. ErrAlreadyRolledBack when another writer already pushed a
// rollback of r.Failed (the error names it); ErrSuperseded when the tip
// targets another version. Losing a race re-fetches and decides again.
func (d *Desired) Rollback(ctx context.Context, r RollbackRequest) (plumbing.Hash, error) {
	var err error
	for range maxRollbackAttempts {
		var tip, h plumbing.Hash
		if tip, err = d.Fetch(ctx); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("roll back %s: %w", r.App, err)
		}
		h, err = d.rollbackOnce(ctx, tip, r)
		if !errors.Is(err, ErrConflict) {
			return h, err
		}
	}
	return plumbing.ZeroHash, err
}

func (d *Desired) rollbackOnce(ctx context.Context, tip plumbing.Hash, r RollbackRequest) (plumbing.Hash, error) {
	what := fmt.Sprintf("roll back %s from commit %s", r.App, short(r.Failed))
	if err := d.checkRollbackNeeded(tip, &r); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s: %w", what, err)
	}
	plan, err := d.planRollback(tip, r.Failed, r.App, r.To)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s: %w", what, err)
	}
	msg := fmt.Sprintf("%s: roll back from %s to %s", r.App, r.Version, orNone(plan.to))
	if plan.revert {
		msg = fmt.Sprintf("Revert %q\n\nThis reverts commit %s.", plan.subject, r.Failed)
	}
	if r.Reason != "" {
		msg += "\n\n" + r.Reason
	}
	tr := Trailers{App: r.App, From: r.Version, To: plan.to, Reason: r.Reason, Node: r.Node, RollbackOf: r.Failed.String()}
	if r.Waves {
		tr.Rollout = RolloutWaves
	}
	return d.Commit(ctx, CommitRequest{Expect: tip, Files: plan.files, Message: msg, Author: r.Author, Trailers: tr})
}

// checkRollbackNeeded walks from tip back to r.Failed looking for an
// existing rollback of it, then checks the tip still targets r.Version.
func (d *Desired) checkRollbackNeeded(tip plumbing.Hash, r *RollbackRequest) error {
	if r.Version == "" {
		v, err := d.AppVersion(r.Failed, r.App)
		if err != nil {
			return err
		}
		r.Version = v
	}
	found, err := d.walkBack(tip, r.Failed, func(c *object.Commit) bool {
		return ParseTrailers(c.Message).RollbackOf == r.Failed.String()
	})
	if err != nil {
		return err
	}
	if found != nil {
		return fmt.Errorf("commit %s by %s: %w", short(found.Hash), found.Author.Name, ErrAlreadyRolledBack)
	}
	cur, err := d.AppVersion(tip, r.App)
	if err != nil {
		return err
	}
	if cur != r.Version {
		return fmt.Errorf("the tip %s targets %s, not the failed %s: %w", short(tip), orNone(cur), r.Version, ErrSuperseded)
	}
	return nil
}

// walkBack follows first parents from tip until stop (exclusive) and returns
// the first commit match accepts. ErrSuperseded when stop is not on the way.
func (d *Desired) walkBack(tip, stop plumbing.Hash, match func(*object.Commit) bool) (*object.Commit, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	for h := tip; h != stop; {
		c, err := d.s.repo.CommitObject(h)
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", short(h), err)
		}
		if match(c) {
			return c, nil
		}
		if len(c.ParentHashes) == 0 {
			return nil, fmt.Errorf("commit %s is not in the history of the tip %s: %w", short(stop), short(tip), ErrSuperseded)
		}
		h = c.ParentHashes[0]
	}
	return nil, nil
}

// rollbackPlan is the content of a rollback commit.
type rollbackPlan struct {
	files   map[string][]byte
	to      string // the version restored
	revert  bool
	subject string // of the failed commit
}

// planRollback restores app as of base: the newest commit before failed
// whose app version is to (the version the fleet ran), or failed's parent
// when to is empty. When to is in no commit of the history, only the version
// is set back. A revert of failed only when base is its parent.
func (d *Desired) planRollback(tip, failed plumbing.Hash, app, to string) (rollbackPlan, error) {
	fc, err := d.CommitObject(failed)
	if err != nil {
		return rollbackPlan{}, err
	}
	if len(fc.ParentHashes) == 0 {
		return rollbackPlan{}, fmt.Errorf("commit %s has no parent to roll back to", short(failed))
	}
	parent := fc.ParentHashes[0]
	subject := strings.SplitN(fc.Message, "\n", 2)[0]
	base, found, err := d.commitWithVersion(parent, app, to)
	if err != nil {
		return rollbackPlan{}, err
	}
	tipPath, tipSrc, err := d.appFile(tip, app)
	if err != nil {
		return rollbackPlan{}, err
	}
	if !found {
		// The fleet ran a version no commit names (set outside this
		// branch): set it back, and nothing else.
		if tipSrc, err = SetField(tipSrc, app, "version", to); err != nil {
			return rollbackPlan{}, fmt.Errorf("restore %s.version in %s: %w", app, tipPath, err)
		}
		return rollbackPlan{to: to, subject: subject, files: map[string][]byte{tipPath: tipSrc}}, nil
	}
	path, failedSrc, err := d.appFile(failed, app)
	if err != nil {
		return rollbackPlan{}, err
	}
	basePath, baseSrc, err := d.appFile(base, app)
	if err != nil {
		return rollbackPlan{}, fmt.Errorf("app %s has no spec before %s to restore: %w", app, short(failed), err)
	}
	before, err := appLeaves(baseSrc, app)
	if err != nil {
		return rollbackPlan{}, fmt.Errorf("parse %s at %s: %w", basePath, short(base), err)
	}
	plan := rollbackPlan{to: unquote(before["version"]), subject: subject}
	if base == parent && basePath == path && d.onlyAppChanged(parent, failed, path, app, baseSrc, failedSrc) &&
		tipPath == path && bytes.Equal(tipSrc, failedSrc) {
		plan.revert, plan.files = true, map[string][]byte{path: baseSrc}
		return plan, nil
	}
	after, err := appLeaves(failedSrc, app)
	if err != nil {
		return plan, err
	}
	for field, v := range before {
		if after[field] != v {
			if tipSrc, err = SetField(tipSrc, app, field, CUEExpr(v)); err != nil {
				return plan, fmt.Errorf("restore %s.%s in %s: %w", app, field, tipPath, err)
			}
		}
	}
	plan.files = map[string][]byte{tipPath: tipSrc}
	return plan, nil
}

// maxRollbackWalk bounds how far back commitWithVersion looks.
const maxRollbackWalk = 1000

// commitWithVersion follows first parents from start to the newest commit
// whose app version is version; start itself when version is "". found is
// false when no commit within maxRollbackWalk has it.
func (d *Desired) commitWithVersion(start plumbing.Hash, app, version string) (plumbing.Hash, bool, error) {
	if version == "" {
		return start, true, nil
	}
	h := start
	for range maxRollbackWalk {
		if v, err := d.AppVersion(h, app); err == nil && v == version {
			return h, true, nil
		}
		c, err := d.CommitObject(h)
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		if len(c.ParentHashes) == 0 {
			break
		}
		h = c.ParentHashes[0]
	}
	return plumbing.ZeroHash, false, nil
}

// onlyAppChanged reports whether the commit parent..failed changed only the
// file at path, and in it only the declaration of app.
func (d *Desired) onlyAppChanged(parent, failed plumbing.Hash, path, app string, before, after []byte) bool {
	changed, err := d.changedFiles(parent, failed)
	if err != nil || len(changed) != 1 || changed[0] != path {
		return false
	}
	a, errA := withoutApp(before, app)
	b, errB := withoutApp(after, app)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

func withoutApp(src []byte, app string) ([]byte, error) {
	spans, err := appSpans(src, app)
	if err != nil {
		return nil, err
	}
	out := src
	for i := len(spans) - 1; i >= 0; i-- {
		out = append(out[:spans[i].start:spans[i].start], out[spans[i].end:]...)
	}
	return out, nil
}

// changedFiles lists the paths that differ between two commits.
func (d *Desired) changedFiles(a, b plumbing.Hash) ([]string, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	ta, err := treeOf(d, a)
	if err != nil {
		return nil, err
	}
	tb, err := treeOf(d, b)
	if err != nil {
		return nil, err
	}
	changes, err := object.DiffTree(ta, tb)
	if err != nil {
		return nil, fmt.Errorf("diff %s..%s: %w", short(a), short(b), err)
	}
	var out []string
	for _, c := range changes {
		name := c.To.Name
		if name == "" {
			name = c.From.Name
		}
		out = append(out, name)
	}
	return out, nil
}

func treeOf(d *Desired, h plumbing.Hash) (*object.Tree, error) {
	c, err := d.s.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", short(h), err)
	}
	return c.Tree()
}
