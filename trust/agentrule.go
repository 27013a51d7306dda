package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/spec"
)

// checkAgentCommit returns why c, signed by an agent key, is not a rollback
// or a pause an agent may write (nil when it is). Such a commit has one
// parent, changes only the file declaring one app (its Reconciler-App
// trailer) and nothing else of the fleet, and either
//
//   - rolls back (Reconciler-Rollback-Of: F): F is on the first-parent
//     history, the parent still targets the version F set, and each of the
//     app's fields is either left alone or restored to what it was before F
//     (or, for the version the fleet ran, Reconciler-To, what it was at the
//     newest of the 20 commits before F that set it); version and artifact
//     together; or
//   - pauses: the app's spec is unchanged but for paused, false to true.
//
// So a stolen node key can undo the latest change of an app's version, or
// pause it, and nothing else: it cannot deploy. It returns the oldest
// commit whose specs c keeps or restores (its source): every commit from c's
// parent down to it must itself be trusted (see trustedSource).
func (p *Policy) checkAgentCommit(repo *git.Repository, c *object.Commit) (plumbing.Hash, error) {
	if len(c.ParentHashes) != 1 {
		return plumbing.ZeroHash, fmt.Errorf("it has %d parents (agents write no merges)", len(c.ParentHashes))
	}
	t := fleetrepo.ParseTrailers(c.Message)
	if t.App == "" {
		return plumbing.ZeroHash, errors.New("it has no Reconciler-App trailer naming the app it rolls back or pauses")
	}
	parent := c.ParentHashes[0]
	if err := p.onlySpecFile(repo, parent, c); err != nil {
		return plumbing.ZeroHash, err
	}
	before, after, err := p.appChange(repo, parent, c.Hash, t.App)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if t.RollbackOf == "" {
		return parent, pauseOnly(t.App, before, after)
	}
	return p.restores(repo, parent, t, before, after)
}

// onlySpecFile checks that c changes exactly one spec file of SpecDir.
func (p *Policy) onlySpecFile(repo *git.Repository, parent plumbing.Hash, c *object.Commit) error {
	pc, err := repo.CommitObject(parent)
	if err != nil {
		return fmt.Errorf("cannot read its parent %s: %v", parent, err)
	}
	from, err := pc.Tree()
	if err != nil {
		return fmt.Errorf("cannot read the tree of %s: %v", parent, err)
	}
	to, err := c.Tree()
	if err != nil {
		return fmt.Errorf("cannot read its tree: %v", err)
	}
	changes, err := object.DiffTree(from, to)
	if err != nil {
		return fmt.Errorf("cannot diff it with its parent: %v", err)
	}
	var names []string
	for _, ch := range changes {
		names = append(names, changedPath(ch))
	}
	dir := path.Clean("/" + p.SpecDir)[1:]
	if len(names) != 1 || path.Dir("/" + names[0])[1:] != dir || !strings.HasSuffix(names[0], ".cue") {
		return fmt.Errorf("it changes %d files (%s); a rollback or pause changes only the spec file declaring the app", len(names), strings.Join(names, ", "))
	}
	return nil
}

func changedPath(ch *object.Change) string {
	if ch.To.Name != "" {
		return ch.To.Name
	}
	return ch.From.Name
}

// appChange loads the fleet at parent and at c, checks that nothing but
// app changed, and returns app's spec at both.
func (p *Policy) appChange(repo *git.Repository, parent, c plumbing.Hash, app string) (before, after spec.App, err error) {
	fb, err := spec.LoadCommit(repo, parent, p.SpecDir)
	if err != nil {
		return before, after, fmt.Errorf("its parent's specs do not load: %v", err)
	}
	fa, err := spec.LoadCommit(repo, c, p.SpecDir)
	if err != nil {
		return before, after, fmt.Errorf("its specs do not load: %v", err)
	}
	var ok bool
	if before, ok = fb.Apps[app]; !ok {
		return before, after, fmt.Errorf("app %s is not in the fleet before it", app)
	}
	if after, ok = fa.Apps[app]; !ok {
		return before, after, fmt.Errorf("it removes app %s", app)
	}
	if !reflect.DeepEqual(fb.Nodes, fa.Nodes) {
		return before, after, errors.New("it changes the nodes inventory")
	}
	for _, name := range slices.Sorted(maps.Keys(fa.Apps)) {
		if name != app && !reflect.DeepEqual(fb.Apps[name], fa.Apps[name]) {
			return before, after, fmt.Errorf("it changes app %s too", name)
		}
	}
	if len(fb.Apps) != len(fa.Apps) {
		return before, after, errors.New("it adds or removes apps")
	}
	return before, after, nil
}

// pauseOnly accepts a change of paused from false to true, alone.
func pauseOnly(app string, before, after spec.App) error {
	paused := before
	paused.Paused = true
	if before.Paused || !reflect.DeepEqual(after, paused) {
		return fmt.Errorf("it is neither a rollback (no Reconciler-Rollback-Of trailer) nor a pause of %s (paused false to true, nothing else)", app)
	}
	return nil
}

// restores checks a rollback of t.RollbackOf (see checkAgentCommit).
func (p *Policy) restores(repo *git.Repository, parent plumbing.Hash, t fleetrepo.Trailers, before, after spec.App) (plumbing.Hash, error) {
	var none plumbing.Hash
	failed, err := firstParentAncestor(repo, parent, t.RollbackOf)
	if err != nil {
		return none, err
	}
	if len(failed.ParentHashes) == 0 {
		return none, fmt.Errorf("it rolls back %s, which has no parent to restore", failed.Hash)
	}
	prior := failed.ParentHashes[0]
	set, err := spec.LoadCommit(repo, failed.Hash, p.SpecDir)
	if err != nil {
		return none, fmt.Errorf("the specs of %s it rolls back do not load: %v", failed.Hash, err)
	}
	old, err := spec.LoadCommit(repo, prior, p.SpecDir)
	if err != nil {
		return none, fmt.Errorf("the specs before %s do not load: %v", failed.Hash, err)
	}
	if v := set.Apps[t.App].Version; v != before.Version {
		return none, fmt.Errorf("the commit before it targets %s %s, not %s that %s set: rollbacks lose to newer commits", t.App, before.Version, v, failed.Hash)
	}
	restored, ok := old.Apps[t.App]
	if !ok {
		return none, fmt.Errorf("app %s did not exist before %s", t.App, failed.Hash)
	}
	err = fieldsFrom(t.App, after, before, restored, prior)
	if err == nil {
		return prior, nil
	}
	if t.To == "" || t.To == restored.Version {
		return none, err
	}
	// An agent restores the version the fleet ran (its Reconciler-To),
	// as of the newest commit before F that set it, skipping versions
	// committed in between but never deployed (issue 17, bug 3): accept
	// that spec too, within maxRestoreWalk commits before F.
	base, baseApp, found := p.appWithVersion(repo, prior, t.App, t.To)
	if !found {
		return none, err
	}
	if err := fieldsFrom(t.App, after, before, baseApp, base); err != nil {
		return none, err
	}
	return base, nil
}

// trustedSource checks that the specs an agent commit c keeps or restores
// come from trusted commits: every first-parent commit from c's parent down
// to its source must verify (a person's, or an agent commit whose own
// source does), unless the walk reaches base, the last accepted tip, first.
// Under --require-signed chain the commits after base are judged anyway;
// under tip, and on an agent's first fetch, they are not, and without this
// a stolen node key plus push rights could "restore" a version from an
// unsigned commit pushed just before: a deployment.
func (p *Policy) trustedSource(repo *git.Repository, c *object.Commit, source, base plumbing.Hash) error {
	need := map[plumbing.Hash]bool{source: true}
	h := c.ParentHashes[0]
	for n := 0; len(need) > 0; n++ {
		if h == base {
			return nil
		}
		if n >= maxWalk {
			return fmt.Errorf("it builds on %s, more than %d commits before it", source, maxWalk)
		}
		x, err := repo.CommitObject(h)
		if err != nil {
			return fmt.Errorf("cannot read %s: %v", h, err)
		}
		sg, src, err := p.judge(repo, x)
		if err != nil {
			return fmt.Errorf("it builds on %s, which is not trusted: %v", h, err)
		}
		delete(need, h)
		if sg.Role == RoleAgent {
			need[src] = true
		}
		if len(need) > 0 && len(x.ParentHashes) == 0 {
			return fmt.Errorf("it builds on commits not on the first-parent history before it")
		}
		if len(need) > 0 {
			h = x.ParentHashes[0]
		}
	}
	return nil
}

// maxRestoreWalk bounds how far before the rolled-back commit an agent's
// rollback may restore the app's spec from.
const maxRestoreWalk = 20

// appWithVersion finds, following first parents from start, the newest
// commit (within maxRestoreWalk) whose specs load and give app version.
func (p *Policy) appWithVersion(repo *git.Repository, start plumbing.Hash, app, version string) (plumbing.Hash, spec.App, bool) {
	h := start
	for range maxRestoreWalk {
		if f, err := spec.LoadCommit(repo, h, p.SpecDir); err == nil {
			if a, ok := f.Apps[app]; ok && a.Version == version {
				return h, a, true
			}
		}
		c, err := repo.CommitObject(h)
		if err != nil || len(c.ParentHashes) == 0 {
			break
		}
		h = c.ParentHashes[0]
	}
	return plumbing.ZeroHash, spec.App{}, false
}

// fieldsFrom checks that each field group of after equals before's or
// restored's, and that something changed.
func fieldsFrom(app string, after, before, restored spec.App, prior plumbing.Hash) error {
	a, errA := fieldGroups(after)
	b, errB := fieldGroups(before)
	r, errR := fieldGroups(restored)
	if err := errors.Join(errA, errB, errR); err != nil {
		return fmt.Errorf("cannot compare the specs of %s: %v", app, err)
	}
	changed := false
	for _, g := range slices.Sorted(maps.Keys(a)) {
		switch {
		case bytes.Equal(a[g], b[g]):
		case bytes.Equal(a[g], r[g]):
			changed = true
		default:
			value := string(a[g])
			if g == versionGroup {
				value = fmt.Sprintf("%q (artifact %s)", after.Version, after.Artifact.URL)
			}
			return fmt.Errorf("it sets %s's %s to %s, which is neither what the commit before it had nor what %s (the last before the rolled-back commit) had", app, g, value, prior)
		}
	}
	if !changed {
		return fmt.Errorf("it changes nothing of %s", app)
	}
	return nil
}

const versionGroup = "version and artifact"

// fieldGroups splits an app spec into the groups of fields a rollback
// restores as units: version and artifact together (the artifact's URL
// usually names the version), every other top-level field alone.
func fieldGroups(a spec.App) (map[string][]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		group := k
		if k == "version" || k == "artifact" {
			group = versionGroup
		}
		out[group] = append(out[group], fields[k]...)
	}
	return out, nil
}

// firstParentAncestor finds the commit id on from's first-parent history
// (from included).
func firstParentAncestor(repo *git.Repository, from plumbing.Hash, id string) (*object.Commit, error) {
	if !plumbing.IsHash(id) {
		return nil, fmt.Errorf("its Reconciler-Rollback-Of %q is not a commit id", id)
	}
	want := plumbing.NewHash(id)
	for h, n := from, 0; n < maxWalk; n++ {
		c, err := repo.CommitObject(h)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", h, err)
		}
		if c.Hash == want {
			return c, nil
		}
		if len(c.ParentHashes) == 0 {
			break
		}
		h = c.ParentHashes[0]
	}
	return nil, fmt.Errorf("it rolls back %s, which is not on the first-parent history before it", want)
}
