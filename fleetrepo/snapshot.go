package fleetrepo

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// snapshotKey keys, in a context, the ref listing a Snapshot of this
// handle took.
type snapshotKey struct{ sh *Shared }

// Snapshot lists the shared state's refs once, fetches app's rollout record
// and leases when they moved (one fetch for both), and returns a context
// under which this handle's reads (Record, Leases, Reports) answer from
// that listing instead of listing the refs again each: what one decision
// of the rollout coordinator reads costs one ref listing, not three
// (rollout.Snapshotter). Writes never use it: every compare-and-swap reads
// its ref afresh. The listing is as old as the context: use it for one
// decision only.
func (sh *Shared) Snapshot(ctx context.Context, app string) (context.Context, error) {
	if err := checkName("app", app); err != nil {
		return ctx, fmt.Errorf("read shared state: %w", err)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	refs, err := sh.s.list(ctx, SharedPrefix)
	if err != nil {
		return ctx, fmt.Errorf("read shared state of %s: %w", app, err)
	}
	record, leases := RolloutPrefix+app, LeasePrefix+app+"/"
	want := map[plumbing.ReferenceName]plumbing.Hash{}
	for ref, h := range refs {
		if n := ref.String(); (n == record || strings.HasPrefix(n, leases)) && sh.validRef(ref) {
			want[ref] = h
		}
	}
	if err := sh.s.fetch(ctx, want); err != nil && ctx.Err() == nil {
		// A bad ref (a missing object) fails the fetch of all: the reads
		// fetch ref by ref, and name what cannot be read.
		sh.s.log.Debug("fetch of the shared state failed; reading ref by ref", "app", app, "err", err)
	}
	return context.WithValue(ctx, snapshotKey{sh}, &snapshotRefs{refs}), nil
}

// snapshotRefs is a Snapshot's listing; nil in a context: none.
type snapshotRefs struct {
	refs map[plumbing.ReferenceName]plumbing.Hash
}

// fresh is ctx without this handle's Snapshot: what a write reads.
func (sh *Shared) fresh(ctx context.Context) context.Context {
	if snap, _ := ctx.Value(snapshotKey{sh}).(*snapshotRefs); snap == nil {
		return ctx
	}
	return context.WithValue(ctx, snapshotKey{sh}, (*snapshotRefs)(nil))
}

// listPrefix lists the remote refs under prefix: from ctx's Snapshot when
// it has one, else from the repository. Caller holds mu.
func (sh *Shared) listPrefix(ctx context.Context, prefix string) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	snap, _ := ctx.Value(snapshotKey{sh}).(*snapshotRefs)
	if snap == nil {
		return sh.s.list(ctx, prefix)
	}
	out := maps.Clone(snap.refs)
	maps.DeleteFunc(out, func(n plumbing.ReferenceName, _ plumbing.Hash) bool { return !strings.HasPrefix(n.String(), prefix) })
	return out, nil
}
