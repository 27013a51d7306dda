package fleetrepo

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// BadRef is a shared-state ref that cannot be read: it points at a missing
// object, at something other than a commit, or at a commit whose file is
// not the JSON expected. Readers skip it and go on with the others (one bad
// node report must not stop every rollout of the fleet); BadRefs names it
// for `status` and the agent's metrics.
type BadRef struct {
	Ref    string `json:"ref"`
	Commit string `json:"commit"`
	Err    string `json:"error"`
}

// BadRefs returns the refs found unreadable by the last reads of their
// kind (Reports, Leases, Record), sorted by ref. A ref leaves the list once
// it reads again (rewritten, or deleted).
// It does not wait for a read in progress (a metric may call it).
func (sh *Shared) BadRefs() []BadRef {
	sh.badMu.Lock()
	defer sh.badMu.Unlock()
	out := slices.Collect(maps.Values(sh.bad))
	slices.SortFunc(out, func(a, b BadRef) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// markBad records ref as unreadable at h, warning once per ref and value.
// Caller holds mu.
func (sh *Shared) markBad(ref plumbing.ReferenceName, h plumbing.Hash, err error) {
	sh.badMu.Lock()
	defer sh.badMu.Unlock()
	b := BadRef{Ref: ref.String(), Commit: h.String(), Err: err.Error()}
	if old, ok := sh.bad[ref]; !ok || old.Commit != b.Commit {
		sh.s.log.Warn("shared ref unreadable: skipped (rewrite or delete it)", "ref", b.Ref, "commit", short(h), "err", err)
	}
	sh.bad[ref] = b
}

// markGood forgets the bad refs under prefix that are not in bad now.
// Caller holds mu.
func (sh *Shared) markGood(prefix string, bad map[plumbing.ReferenceName]bool) {
	sh.badMu.Lock()
	defer sh.badMu.Unlock()
	for ref := range sh.bad {
		if strings.HasPrefix(ref.String(), prefix) && !bad[ref] {
			delete(sh.bad, ref)
		}
	}
}

// forget drops ref from the bad refs (rewritten). Caller holds mu.
func (sh *Shared) forget(ref plumbing.ReferenceName) {
	sh.badMu.Lock()
	defer sh.badMu.Unlock()
	delete(sh.bad, ref)
}

// currentReadable is current for readers that skip bad refs: when fetching
// the refs together fails, each is fetched alone, and those that fail
// while others succeed (or that name a missing object) are left out and
// marked bad. Caller holds mu.
func (sh *Shared) currentReadable(ctx context.Context, prefix string) (map[plumbing.ReferenceName]plumbing.Hash, map[plumbing.ReferenceName]bool, error) {
	refs, err := sh.listPrefix(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	maps.DeleteFunc(refs, func(ref plumbing.ReferenceName, _ plumbing.Hash) bool { return !sh.validRef(ref) })
	bad := map[plumbing.ReferenceName]bool{}
	ferr := sh.s.fetch(ctx, refs)
	if ferr == nil {
		return refs, bad, nil
	}
	if ctx.Err() != nil {
		return nil, nil, ferr
	}
	good := map[plumbing.ReferenceName]plumbing.Hash{}
	errs := map[plumbing.ReferenceName]error{}
	for ref, h := range refs {
		if err := sh.s.fetch(ctx, map[plumbing.ReferenceName]plumbing.Hash{ref: h}); err != nil {
			errs[ref] = err
			continue
		}
		good[ref] = h
	}
	for ref, err := range errs {
		if len(good) == 0 && !missingObject(err) {
			return nil, nil, ferr // nothing fetches: the repository, not a ref
		}
		sh.markBad(ref, refs[ref], err)
		bad[ref] = true
	}
	return good, bad, nil
}

// missingObject reports whether a fetch error says the remote lacks the
// object a ref names (rather than that the remote is unreachable).
func missingObject(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"object not found", "not our ref", "missing", "bad object", "unadvertised", "upload-pack"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
