package etcdstore

import (
	"fmt"
	"maps"
	"slices"

	"github.com/fleetops/reconciler/fleetrepo"
)

// BadRefs returns the keys found unreadable by the last reads of their kind,
// sorted by key, in the Git store's shape (Ref is the key, Commit names the
// revision): `status`, `history` and `leases` print them. A key leaves the
// list once it reads again.
func (s *Store) BadRefs() []fleetrepo.BadRef {
	s.badMu.Lock()
	defer s.badMu.Unlock()
	var out []fleetrepo.BadRef
	for _, k := range slices.Sorted(maps.Keys(s.bad)) {
		out = append(out, s.bad[k])
	}
	return out
}

func (s *Store) markBad(key string, rev int64, err error) {
	s.badMu.Lock()
	defer s.badMu.Unlock()
	if _, ok := s.bad[key]; !ok {
		s.opts.Logger.Warn("skipping an unreadable shared-state key", "key", key, "revision", rev, "err", err)
	}
	s.bad[key] = fleetrepo.BadRef{Ref: key, Commit: fmt.Sprintf("revision %d", rev), Err: err.Error()}
}

func (s *Store) markGood(key string) {
	s.badMu.Lock()
	defer s.badMu.Unlock()
	delete(s.bad, key)
}
