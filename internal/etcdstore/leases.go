package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

func randomID() string { return rand.Text()[:16] }

// observation is when this Store first saw a lease key at a revision, on its
// own clock (as fleetrepo's): expiry is measured from it, never from times
// other nodes wrote.
type observation struct {
	token int64
	since time.Time
	own   bool // this Store wrote token: since is when it sent the write
	write writeID
}

// writeID tells one lease write from another by what the writer put in
// it: an etcd write whose answer was lost has no revision the writer
// knows, so a write is recognised later by its value.
type writeID struct {
	holder            string
	acquired, renewed time.Time
}

func idOf(doc leaseDoc) writeID {
	return writeID{holder: doc.Holder, acquired: doc.Acquired, renewed: doc.Renewed}
}

// lostWrite is a lease write whose answer never came: it may have landed.
type lostWrite struct {
	key  string
	id   writeID
	sent time.Time
	ttl  time.Duration
}

// elapsed is the time from since to now, the longer of the monotonic and
// the wall clock's reading (as fleetrepo's: a clock that stood still during
// a suspend must not lengthen a lease).
func elapsed(now, since time.Time) time.Duration {
	return max(now.Sub(since), now.Round(0).Sub(since.Round(0)))
}

// sentLost remembers a write whose answer was lost, forgetting those too
// old to matter. Caller holds mu.
func (s *Store) sentLost(key string, doc leaseDoc, sent time.Time) {
	now := s.opts.Clock.Now()
	s.lost = slices.DeleteFunc(s.lost, func(w lostWrite) bool { return elapsed(now, w.sent) >= w.ttl })
	s.lost = append(s.lost, lostWrite{key: key, id: idOf(doc), sent: sent, ttl: doc.TTL})
}

// lostAt returns the lost write of key that made a value with id. Caller holds mu.
func (s *Store) lostAt(key string, id writeID) (lostWrite, bool) {
	for _, w := range s.lost {
		if w.key == key && w.id == id {
			return w, true
		}
	}
	return lostWrite{}, false
}

// leaseDoc is a lease key's value: the same JSON as the Git store's lease.json.
type leaseDoc struct {
	App      string        `json:"app"`
	Slot     int           `json:"slot"`
	Holder   string        `json:"holder,omitempty"`
	Rollout  string        `json:"rollout,omitempty"`
	Acquired time.Time     `json:"acquired,omitzero"`
	Renewed  time.Time     `json:"renewed,omitzero"`
	TTL      time.Duration `json:"ttl"`
	Note     string        `json:"note,omitempty"`
}

func (s *Store) leasePrefix() string { return s.opts.Prefix + "leases/" }

func (s *Store) leaseKey(app string, slot int) string {
	return fmt.Sprintf("%s%s/%d", s.leasePrefix(), app, slot)
}

func (s *Store) parseLeaseKey(key string) (app string, slot int, ok bool) {
	app, sl, ok := strings.Cut(strings.TrimPrefix(key, s.leasePrefix()), "/")
	n, err := strconv.Atoi(sl)
	return app, n, ok && err == nil && n >= 0 && strconv.Itoa(n) == sl && spec.CheckName("app", app) == nil
}

func checkLease(app string, slot int) error {
	if slot < 0 {
		return fmt.Errorf("invalid lease slot %d for app %s: slots count from 0", slot, app)
	}
	return spec.CheckName("app", app)
}

func token(r int64) string {
	if r == 0 {
		return ""
	}
	return strconv.FormatInt(r, 10)
}

// observe records rev as the key's current token seen at now (keeping an
// earlier time when unchanged) and returns the lease as it looks. Caller holds mu.
func (s *Store) observe(key string, rev int64, doc leaseDoc, now time.Time) reconciler.Lease {
	o, ok := s.seen[key]
	if !ok || o.token != rev {
		o = observation{token: rev, since: now, write: idOf(doc)}
		s.seen[key] = o
	}
	return reconciler.Lease{App: doc.App, Slot: doc.Slot, Holder: doc.Holder, Rollout: doc.Rollout,
		Acquired: doc.Acquired, Renewed: doc.Renewed, TTL: doc.TTL,
		Token: token(rev), Unchanged: s.opts.Clock.Now().Sub(o.since)}
}

// readLease reads one slot (a free zero lease when absent). Caller holds mu.
func (s *Store) readLease(ctx context.Context, app string, slot int) (reconciler.Lease, int64, error) {
	key := s.leaseKey(app, slot)
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, key)
	if err != nil {
		return reconciler.Lease{}, 0, s.classify("read lease "+key+" from", err)
	}
	var doc leaseDoc
	var r int64
	if len(resp.Kvs) == 1 {
		kv := resp.Kvs[0]
		r = kv.ModRevision
		if err := json.Unmarshal(kv.Value, &doc); err != nil {
			s.markBad(key, r, err)
			return reconciler.Lease{}, r, fmt.Errorf("lease %s/%d at revision %d: %w: %w (leases break overwrites it)", app, slot, r, fleetrepo.ErrBadLease, err)
		}
		s.markGood(key)
	}
	doc.App, doc.Slot = app, slot
	return s.observe(key, r, doc, s.opts.Clock.Now()), r, nil
}

// Acquire takes slot of app's lease set for holder and rollout, with the
// Git store's rule: the slot is free, or its holder's lease has expired as
// this Store sees it (unchanged for its TTL on this Store's clock), or
// holder already holds it. Otherwise the error matches
// fleetrepo.ErrLeaseHeld; a lost race matches fleetrepo.ErrConflict.
func (s *Store) Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error) {
	if err := checkLease(app, slot); err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	if holder == "" || ttl <= 0 {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d: need a holder and a positive TTL", app, slot)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, r, err := s.readLease(ctx, app, slot)
	if err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d: %w", app, slot, err)
	}
	if cur.Held() && !cur.Expired() && cur.Holder != holder {
		return cur, fmt.Errorf("acquire lease %s/%d: held by %s for rollout %s, unchanged for %s of its %s TTL: %w",
			app, slot, cur.Holder, cur.Rollout, cur.Unchanged.Round(time.Millisecond), cur.TTL, fleetrepo.ErrLeaseHeld)
	}
	now := s.opts.Clock.Now()
	doc := leaseDoc{App: app, Slot: slot, Holder: holder, Rollout: rollout, Acquired: now, Renewed: now, TTL: ttl}
	l, err := s.writeLease(ctx, doc, r, now)
	if err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d for %s: %w", app, slot, holder, err)
	}
	return l, nil
}

// writeLease puts doc by a transaction on the key's revision (0: it must
// not exist). The observation of the new token starts at sent, taken
// before the call: the holder's view of its lease is never longer than any
// observer's. Caller holds mu.
func (s *Store) writeLease(ctx context.Context, doc leaseDoc, expected int64, sent time.Time) (reconciler.Lease, error) {
	key := s.leaseKey(doc.App, doc.Slot)
	r, err := s.cas(ctx, key, expected, doc, "write lease "+key+" in")
	if err != nil {
		if !errors.Is(err, fleetrepo.ErrConflict) {
			s.sentLost(key, doc, sent) // it may have landed
		}
		return reconciler.Lease{}, err
	}
	s.seen[key] = observation{token: r, since: sent, own: true, write: idOf(doc)}
	return s.observe(key, r, doc, sent), nil
}

// cas puts v (JSON, credentials redacted) at key when its mod revision is
// still expected (0: absent) and returns the new revision: the fencing
// token. A lost race is a *ConflictError. Caller holds mu.
func (s *Store) cas(ctx context.Context, key string, expected int64, v any, op string) (int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	data = []byte(redact.String(string(data)))
	cond := clientv3.Compare(clientv3.ModRevision(key), "=", expected)
	if expected == 0 {
		cond = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).If(cond).Then(clientv3.OpPut(key, string(data))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, s.classify(op, err)
	}
	if !resp.Succeeded {
		var actual int64
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
			actual = rr.Kvs[0].ModRevision
		}
		return 0, &ConflictError{URL: s.url, Key: key, Expected: expected, Actual: actual}
	}
	return resp.Header.Revision, nil
}

// Renew extends a held lease: a transaction on its token. After a
// takeover, break or release the error matches fleetrepo.ErrLeaseLost.
func (s *Store) Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error) {
	return s.rewrite(ctx, l, "renew", func(doc *leaseDoc, now time.Time) { doc.Renewed = now })
}

// Release frees a held lease; fleetrepo.ErrLeaseLost when it was no longer held.
func (s *Store) Release(ctx context.Context, l reconciler.Lease) error {
	_, err := s.rewrite(ctx, l, "release", func(doc *leaseDoc, now time.Time) {
		*doc = leaseDoc{App: l.App, Slot: l.Slot, TTL: l.TTL, Renewed: now, Note: "released by " + l.Holder}
	})
	return err
}

// rewrite swaps the lease from l.Token to an edited copy. A slot that moved
// only by writes of this same holding (answers lost) is adopted, as on Git.
func (s *Store) rewrite(ctx context.Context, l reconciler.Lease, op string, edit func(*leaseDoc, time.Time)) (reconciler.Lease, error) {
	tok, perr := strconv.ParseInt(l.Token, 10, 64)
	if err := checkLease(l.App, l.Slot); err != nil || perr != nil || tok <= 0 || l.Holder == "" {
		return l, fmt.Errorf("%s lease %s/%d: not a held lease (%v)", op, l.App, l.Slot, errors.Join(err, perr))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	doc := leaseDoc{App: l.App, Slot: l.Slot, Holder: l.Holder, Rollout: l.Rollout, Acquired: l.Acquired, Renewed: l.Renewed, TTL: l.TTL}
	edit(&doc, now)
	if op == "renew" && s.expiredLocked(l, now) {
		// Expired on this Store's clock: observers may have taken the
		// slot over or recorded the holder failed, and a renewal landing
		// now would revive the lease behind their backs. Only a write of
		// this holding that landed within the TTL, its answer lost, kept
		// it alive (as on Git).
		own, id, ok := s.ownSuccessor(ctx, l, tok)
		if w, sent := s.lostAt(s.leaseKey(l.App, l.Slot), id); !ok || !sent || elapsed(now, w.sent) >= l.TTL {
			return l, fmt.Errorf("renew lease %s/%d held by %s: %w: expired on this node's clock (no renewal landed within its %s TTL); take a new lease",
				l.App, l.Slot, l.Holder, fleetrepo.ErrLeaseLost, l.TTL)
		}
		tok = own
	}
	next, err := s.writeLease(ctx, doc, tok, now)
	if errors.Is(err, fleetrepo.ErrConflict) {
		if own, _, ok := s.ownSuccessor(ctx, l, tok); ok {
			next, err = s.writeLease(ctx, doc, own, now)
		}
	}
	if errors.Is(err, fleetrepo.ErrConflict) {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w: %w", op, l.App, l.Slot, l.Holder, fleetrepo.ErrLeaseLost, err)
	}
	if err != nil {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w", op, l.App, l.Slot, l.Holder, err)
	}
	return next, nil
}

// maxOwnSuccessors bounds how many lost answers in a row a holder recovers
// from by recognising its own writes.
const maxOwnSuccessors = 16

// ownSuccessor returns the slot's current revision, and what identifies
// the write that made it, when every write since tok is of the same
// holding as l (same holder, rollout, acquisition time and TTL), walking
// the key's history back through etcd's revisions. Caller holds mu.
func (s *Store) ownSuccessor(ctx context.Context, l reconciler.Lease, tok int64) (int64, writeID, bool) {
	key := s.leaseKey(l.App, l.Slot)
	var tip int64
	var tipID writeID
	at := int64(0) // 0: the current revision
	for range maxOwnSuccessors {
		kv, err := s.getAt(ctx, key, at)
		if err != nil || kv == nil || kv.ModRevision < tok {
			return tip, tipID, false
		}
		if kv.ModRevision == tok {
			return tip, tipID, tip != 0
		}
		var doc leaseDoc
		if json.Unmarshal(kv.Value, &doc) != nil || doc.Holder != l.Holder || doc.Rollout != l.Rollout ||
			!doc.Acquired.Equal(l.Acquired) || doc.TTL != l.TTL {
			return tip, tipID, false // another holding came in between
		}
		if tip == 0 {
			tip, tipID = kv.ModRevision, idOf(doc)
		}
		at = kv.ModRevision - 1
	}
	return tip, tipID, false
}

// expiredLocked reports whether this Store's last word on l's slot is
// older than l's TTL: the write it last saw land, or one it sent whose
// answer was lost. With no write of its own (a holder restarted) it has no
// measure. Caller holds mu.
func (s *Store) expiredLocked(l reconciler.Lease, now time.Time) bool {
	key := s.leaseKey(l.App, l.Slot)
	o, ok := s.seen[key]
	if w, sent := s.lostAt(key, o.write); ok && sent {
		return elapsed(now, w.sent) >= l.TTL
	}
	return ok && o.own && elapsed(now, o.since) >= l.TTL
}

// Validity is how much longer the caller may act under l, on this Store's
// clock: l.TTL minus the time since this Store sent the write that made
// l.Token (0 for a token it did not write). As fleetrepo.(*Shared).Validity,
// the time since is the larger of the monotonic and wall-clock readings.
func (s *Store) Validity(l reconciler.Lease) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.seen[s.leaseKey(l.App, l.Slot)]
	if !ok || !o.own || token(o.token) != l.Token {
		return 0
	}
	return l.TTL - elapsed(s.opts.Clock.Now(), o.since)
}

// Break frees a slot whatever its state (`reconciler leases break`) and
// returns the lease as it was.
func (s *Store) Break(ctx context.Context, app string, slot int) (reconciler.Lease, error) {
	if err := checkLease(app, slot); err != nil {
		return reconciler.Lease{}, fmt.Errorf("break lease: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, r, err := s.readLease(ctx, app, slot)
	now := s.opts.Clock.Now()
	if errors.Is(err, fleetrepo.ErrBadLease) {
		doc := leaseDoc{App: app, Slot: slot, Renewed: now, Note: "unreadable lease overwritten by " + s.opts.Identity}
		if _, err := s.writeLease(ctx, doc, r, now); err != nil {
			return cur, fmt.Errorf("break unreadable lease %s/%d: %w", app, slot, err)
		}
		s.markGood(s.leaseKey(app, slot))
		return cur, nil
	}
	if err != nil {
		return cur, fmt.Errorf("break lease %s/%d: %w", app, slot, err)
	}
	if !cur.Held() {
		return cur, nil
	}
	doc := leaseDoc{App: app, Slot: slot, TTL: cur.TTL, Renewed: now,
		Note: fmt.Sprintf("broken by %s (was held by %s)", s.opts.Identity, cur.Holder)}
	if _, err := s.writeLease(ctx, doc, r, now); err != nil {
		return cur, fmt.Errorf("break lease %s/%d held by %s: %w", app, slot, cur.Holder, err)
	}
	return cur, nil
}

// Leases returns every slot of app's lease set that was ever used, by slot,
// free ones included (an unreadable one is skipped and named by BadRefs);
// app "" returns every app's, by app then slot.
func (s *Store) Leases(ctx context.Context, app string) ([]reconciler.Lease, error) {
	prefix := s.leasePrefix()
	if app != "" {
		if err := spec.CheckName("app", app); err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		prefix += app + "/"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read leases of %s: %w", orAll(app), s.classify("read leases from", err))
	}
	s.leasesRev = resp.Header.Revision
	now := s.opts.Clock.Now()
	var out []reconciler.Lease
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		a, sl, ok := s.parseLeaseKey(key)
		if !ok {
			continue
		}
		var doc leaseDoc
		if err := json.Unmarshal(kv.Value, &doc); err != nil {
			s.markBad(key, kv.ModRevision, fmt.Errorf("read lease: %w", err))
			continue
		}
		s.markGood(key)
		doc.App, doc.Slot = a, sl // the key names the slot, whatever the value says
		out = append(out, s.observe(key, kv.ModRevision, doc, now))
	}
	reconciler.SortLeases(out)
	return out, nil
}

func orAll(app string) string {
	if app == "" {
		return "all apps"
	}
	return app
}

// getAt reads key as of revision at (0: now); nil when absent then.
func (s *Store) getAt(ctx context.Context, key string, at int64) (*kvPair, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	var opts []clientv3.OpOption
	if at > 0 {
		opts = append(opts, clientv3.WithRev(at))
	}
	resp, err := s.cli.Get(octx, key, opts...)
	if err != nil {
		return nil, s.classify("read "+key+" from", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	return &kvPair{Value: kv.Value, ModRevision: kv.ModRevision, Version: kv.Version}, nil
}

type kvPair struct {
	Value       []byte
	ModRevision int64
	Version     int64
}

// LeaseHistory returns the writes of one slot, newest first, at most limit
// (0: all), read back through etcd's revisions: as far as the cluster's
// compaction kept them (an error names where the history stops).
func (s *Store) LeaseHistory(ctx context.Context, app string, slot int, limit int) ([]reconciler.Lease, error) {
	if err := checkLease(app, slot); err != nil {
		return nil, fmt.Errorf("lease history: %w", err)
	}
	key := s.leaseKey(app, slot)
	var out []reconciler.Lease
	for at := int64(0); limit <= 0 || len(out) < limit; {
		kv, err := s.getAt(ctx, key, at)
		if err != nil {
			return out, fmt.Errorf("lease history of %s/%d: %w", app, slot, err)
		}
		if kv == nil {
			return out, nil
		}
		var doc leaseDoc
		if err := json.Unmarshal(kv.Value, &doc); err != nil {
			return out, fmt.Errorf("lease history of %s/%d at revision %d: %w", app, slot, kv.ModRevision, err)
		}
		out = append(out, reconciler.Lease{App: app, Slot: slot, Holder: doc.Holder, Rollout: doc.Rollout,
			Acquired: doc.Acquired, Renewed: doc.Renewed, TTL: doc.TTL, Token: token(kv.ModRevision)})
		if kv.Version <= 1 {
			return out, nil
		}
		at = kv.ModRevision - 1
	}
	return out, nil
}
