package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// maxAppendAttempts bounds Append's re-decide loop under contention (as on Git).
const maxAppendAttempts = 20

// seqWidth is the zero-padded width of an event's sequence number, so that
// keys sort in append order.
const seqWidth = 10

// recordCache is an app's rollout record as read so far: a read asks only
// for the keys after last.
type recordCache struct {
	last   int64 // highest sequence number seen (0: none)
	events []reconciler.Event
}

func (s *Store) recordPrefix(app string) string { return s.opts.Prefix + "rollouts/" + app + "/" }

func (s *Store) eventKey(app string, seq int64) string {
	return fmt.Sprintf("%s%0*d", s.recordPrefix(app), seqWidth, seq)
}

// Record returns the events of the app's rollout record, oldest first (nil
// when the app has none). Records are never deleted: a finished rollout's
// events stay for `history`. The slice is the store's cache, capped at its
// length so later reads append past it: read it, never change it (a copy
// of the whole record at every pass of every node was a fifth of a
// 1,000-node rollout's CPU, docs/scale.md).
func (s *Store) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	if err := spec.CheckName("app", app); err != nil {
		return nil, fmt.Errorf("read rollout record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.record(ctx, app)
	return c.events[:len(c.events):len(c.events)], err
}

// Append adds one event to the app's rollout record: decide sees the record
// as it is and returns the event to append (nil: nothing); the event is
// written as the next sequence key by a transaction that requires that key
// to be new. When another writer appended first, the same transaction
// returns what it appended, and Append calls decide again on that (up to
// 20 times; then a *ConflictError). decide's error is returned unwrapped.
func (s *Store) Append(ctx context.Context, app string, decide func(current []reconciler.Event) (*reconciler.Event, error)) error {
	if err := spec.CheckName("app", app); err != nil {
		return fmt.Errorf("append to rollout record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.record(ctx, app)
	if err != nil {
		return err
	}
	for range maxAppendAttempts {
		if c, err = s.appendOnce(ctx, app, c, decide); !errors.Is(err, fleetrepo.ErrConflict) {
			return err
		}
	}
	return err
}

// appendOnce is one try of Append on the record as c holds it; after a lost
// race it returns c extended by what won. A lost race so costs one request,
// not two: the 100 nodes of a wave recording node_done at once each lose up
// to 99 times, and a read after each loss was half of those round trips
// (docs/scale.md).
func (s *Store) appendOnce(ctx context.Context, app string, c recordCache, decide func([]reconciler.Event) (*reconciler.Event, error)) (recordCache, error) {
	ev, err := decide(c.events[:len(c.events):len(c.events)]) // read-only, as Record's
	if err != nil || ev == nil {
		return c, err
	}
	if ev.Time.IsZero() {
		ev.Time = s.opts.Clock.Now()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return c, fmt.Errorf("encode event: %w", err)
	}
	key := s.eventKey(app, c.last+1)
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, redact.String(string(data)))).
		Else(clientv3.OpGet(key, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.recordPrefix(app))))).Commit()
	if err != nil {
		return c, fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, s.classify("append to rollout record "+app+" in", err))
	}
	if !resp.Succeeded {
		var actual int64
		var kvs []*mvccpb.KeyValue
		if rr := resp.Responses[0].GetResponseRange(); rr != nil {
			kvs = rr.Kvs
		}
		if len(kvs) > 0 && string(kvs[0].Key) == key {
			actual = kvs[0].ModRevision
		}
		return s.extend(app, c, kvs), fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, &ConflictError{URL: s.url, Key: key, Actual: actual})
	}
	c = recordCache{last: c.last + 1, events: append(c.events, *ev)}
	s.records[app] = c
	return c, nil
}

// record reads the events added since the cache. Caller holds mu.
func (s *Store) record(ctx context.Context, app string) (recordCache, error) {
	c := s.records[app]
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, s.eventKey(app, c.last+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.recordPrefix(app))))
	if err != nil {
		return c, fmt.Errorf("read rollout record %s: %w", app, s.classify("read rollout record "+app+" from", err))
	}
	return s.extend(app, c, resp.Kvs), nil
}

// extend adds to the cache c the events of kvs, the keys from its next
// sequence number on. Caller holds mu.
func (s *Store) extend(app string, c recordCache, kvs []*mvccpb.KeyValue) recordCache {
	prefix := s.recordPrefix(app)
	events := c.events // appended past every view Record returned (capped)
	for _, kv := range kvs {
		key := string(kv.Key)
		seq, err := strconv.ParseInt(strings.TrimPrefix(key, prefix), 10, 64)
		if err != nil || len(key)-len(prefix) != seqWidth || seq <= c.last {
			continue // not an event key of this store's (written by hand)
		}
		c.last = seq
		var ev reconciler.Event
		if err := readEvent(kv.Value, &ev); err != nil {
			s.markBad(key, kv.ModRevision, fmt.Errorf("event skipped: %w", err))
			continue
		}
		events = append(events, ev)
	}
	c.events = events
	s.records[app] = c
	return c
}

// readEvent decodes one event: a value that does not decode, or an event of
// no known type or rollout, is garbage (skipped, named by BadRefs).
func readEvent(data []byte, ev *reconciler.Event) error {
	if err := json.Unmarshal(data, ev); err != nil {
		return err
	}
	if !fleetrepo.KnownEvent(ev.Type) || ev.Rollout == "" {
		return fmt.Errorf("not a rollout event (type %q, rollout %q)", ev.Type, ev.Rollout)
	}
	return nil
}

// AppendGuarded is Append under a precondition over lease slots, as the Git
// store's: one transaction compares the next sequence key's creation (it
// must be new) and each guarded lease key's mod revision with the guard's
// Token ("": never written; such a key is created free by the same
// transaction) and puts the event. When the record moved decide is called
// again under the same guard; when a guarded slot moved nothing is written
// and the error matches fleetrepo.ErrGuardMoved (and ErrConflict).
func (s *Store) AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide func(current []reconciler.Event) (*reconciler.Event, error)) error {
	if err := spec.CheckName("app", app); err != nil {
		return fmt.Errorf("append to rollout record: %w", err)
	}
	revs := map[int]int64{}
	for _, l := range guard {
		r, err := strconv.ParseInt(l.Token, 10, 64)
		if l.Token == "" {
			r, err = 0, nil
		}
		if _, dup := revs[l.Slot]; l.App != app || l.Slot < 0 || dup || err != nil || r < 0 {
			return fmt.Errorf("append to rollout record %s: bad lease guard %s/%d (token %q): want distinct slots of app %s", app, l.App, l.Slot, l.Token, app)
		}
		revs[l.Slot] = r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range maxAppendAttempts {
		err = s.appendGuardedOnce(ctx, app, revs, decide)
		if !errors.Is(err, fleetrepo.ErrConflict) || errors.Is(err, fleetrepo.ErrGuardMoved) {
			return err
		}
	}
	return err
}

func (s *Store) appendGuardedOnce(ctx context.Context, app string, guard map[int]int64, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	c, err := s.record(ctx, app)
	if err != nil {
		return err
	}
	ev, err := decide(c.events[:len(c.events):len(c.events)]) // read-only, as Record's
	if err != nil || ev == nil {
		return err
	}
	if ev.Time.IsZero() {
		ev.Time = s.opts.Clock.Now()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	key := s.eventKey(app, c.last+1)
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	puts := []clientv3.Op{clientv3.OpPut(key, redact.String(string(data)))}
	gets := []clientv3.Op{clientv3.OpGet(key)}
	lkeys := []string{key}
	for slot, r := range guard {
		lk := s.leaseKey(app, slot)
		lkeys = append(lkeys, lk)
		gets = append(gets, clientv3.OpGet(lk))
		if r != 0 {
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(lk), "=", r))
			continue
		}
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(lk), "=", 0))
		free, err := json.Marshal(leaseDoc{App: app, Slot: slot, Renewed: s.opts.Clock.Now(), Note: "created free by " + s.opts.Identity + " with a verdict on the record"})
		if err != nil {
			return fmt.Errorf("encode lease: %w", err)
		}
		puts = append(puts, clientv3.OpPut(lk, string(free)))
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).If(conds...).Then(puts...).Else(gets...).Commit()
	if err != nil {
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, s.classify("append to rollout record "+app+" (guarded) in", err))
	}
	if !resp.Succeeded {
		for i, lk := range lkeys {
			var actual int64
			if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
				actual = rr.Kvs[0].ModRevision
			}
			if i == 0 && actual != 0 {
				return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, &ConflictError{URL: s.url, Key: key, Actual: actual})
			}
			if _, slot, _ := s.parseLeaseKey(lk); i > 0 && actual != guard[slot] {
				return fmt.Errorf("append %s to rollout record %s: %w: %w", ev.Type, app, fleetrepo.ErrGuardMoved,
					&ConflictError{URL: s.url, Key: lk, Expected: guard[slot], Actual: actual})
			}
		}
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, &ConflictError{URL: s.url, Key: key})
	}
	s.records[app] = recordCache{last: c.last + 1, events: append(c.events, *ev)}
	return nil
}
