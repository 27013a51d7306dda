package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	// With Options.Decoded: pos is how many keys of the shared record
	// this cache has followed; private, that it stopped following it.
	pos     int
	private bool
}

func (s *Store) recordPrefix(app string) string { return s.opts.Prefix + "rollouts/" + app + "/" }

// wakeKey is the app's wake key: every event but a node_done is written
// with it, in the same transaction, and Watch follows these keys instead
// of the records. A record of 10,000 node_done events sent to each of
// 10,000 watchers was O(nodes²) in a 10,000-node fleet, for events that
// wake no one (docs/scale.md).
func (s *Store) wakeKey(app string) string { return s.opts.Prefix + "wakes/" + app }

// wakeDoc is a wake key's value: what Watch needs to tell whether the event
// can change what its node does (FocusWaves), and where it is.
type wakeDoc struct {
	Type    string `json:"type"`
	Rollout string `json:"rollout"`
	Wave    int    `json:"wave"`
	Seq     int64  `json:"seq"`
}

// withWake adds to a transaction's puts of event ev at seq the wake key,
// unless ev wakes no one (a node_done).
func (s *Store) withWake(ops []clientv3.Op, app string, seq int64, ev *reconciler.Event) []clientv3.Op {
	if ev.Type == reconciler.EventNodeDone {
		return ops
	}
	data, err := json.Marshal(wakeDoc{Type: ev.Type, Rollout: ev.Rollout, Wave: ev.Wave, Seq: seq})
	if err != nil { // four plain fields cannot fail to encode
		panic(err)
	}
	return append(ops, clientv3.OpPut(s.wakeKey(app), string(data)))
}

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
	s.recMu.Lock()
	defer s.recMu.Unlock()
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
	return s.appendWith(ctx, app, decide, s.appendOnce)
}

// appendOnceFunc is one try of an append on the record as c holds it: it
// returns c extended by what it read, and an error matching
// fleetrepo.ErrConflict when another writer won.
type appendOnceFunc func(ctx context.Context, app string, c recordCache, decide func([]reconciler.Event) (*reconciler.Event, error)) (recordCache, error)

// appendWith reads the record and tries once until a try does not lose
// (up to 20 times).
func (s *Store) appendWith(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error), once appendOnceFunc) error {
	if err := spec.CheckName("app", app); err != nil {
		return fmt.Errorf("append to rollout record: %w", err)
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	c, err := s.record(ctx, app)
	if err != nil {
		return err
	}
	for range maxAppendAttempts {
		if c, err = once(ctx, app, c, decide); !errors.Is(err, fleetrepo.ErrConflict) {
			return err
		}
	}
	return err
}

// decided calls decide on the record as c holds it (read-only, as
// Record's) and returns its event, stamped with the time when it has none,
// and that event as stored: JSON, credentials redacted. A nil event: nothing
// to append.
func (s *Store) decided(c recordCache, decide func([]reconciler.Event) (*reconciler.Event, error)) (*reconciler.Event, string, error) {
	ev, err := decide(c.events[:len(c.events):len(c.events)])
	if err != nil || ev == nil {
		return nil, "", err
	}
	if ev.Time.IsZero() {
		ev.Time = s.opts.Clock.Now()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, "", fmt.Errorf("encode event: %w", err)
	}
	return ev, redact.String(string(data)), nil
}

// appendOnce is one try of Append on the record as c holds it; after a lost
// race it returns c extended by what won. A lost race so costs one request,
// not two: the 100 nodes of a wave recording node_done at once each lose up
// to 99 times, and a read after each loss was half of those round trips
// (docs/scale.md).
func (s *Store) appendOnce(ctx context.Context, app string, c recordCache, decide func([]reconciler.Event) (*reconciler.Event, error)) (recordCache, error) {
	ev, stored, err := s.decided(c, decide)
	if err != nil || ev == nil {
		return c, err
	}
	key := s.eventKey(app, c.last+1)
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(s.withWake([]clientv3.Op{clientv3.OpPut(key, stored)}, app, c.last+1, ev)...).
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
	return s.extend(app, c, written(key, stored, resp.Header.Revision)), nil
}

// record reads the events added since the cache, a page of
// Options.RecordPage keys per request, the cache following each page. A
// node that starts reading a record thousands of events long on a loaded
// server so keeps what it read when a later page times out, and the next
// read asks only for the rest: a record read in one request at 10,000
// nodes timed out whole, again and again (docs/scale.md). Caller holds recMu.
func (s *Store) record(ctx context.Context, app string) (recordCache, error) {
	c := s.records[app]
	from, end := s.eventKey(app, c.last+1), clientv3.GetPrefixRangeEnd(s.recordPrefix(app))
	for {
		octx, cancel := s.op(ctx)
		resp, err := s.cli.Get(octx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(s.opts.RecordPage)))
		cancel()
		if err != nil {
			return c, fmt.Errorf("read rollout record %s: %w", app, s.classify("read rollout record "+app+" from", err))
		}
		c = s.extend(app, c, resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			return c, nil
		}
		// Past the page's last key, not the cache's last event: a page of
		// keys that are no events (written by hand) moves the read on too.
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// extend adds to the cache c the events of kvs, the keys from its next
// sequence number on. Caller holds recMu.
func (s *Store) extend(app string, c recordCache, kvs []*mvccpb.KeyValue) recordCache {
	prefix := s.recordPrefix(app)
	shared := s.opts.Decoded != nil && !c.private
	events, n := c.events, len(c.events) // appended past every view Record returned (capped)
	for _, kv := range kvs {
		key := string(kv.Key)
		seq, err := strconv.ParseInt(strings.TrimPrefix(key, prefix), 10, 64)
		if err != nil || len(key)-len(prefix) != seqWidth || seq <= c.last {
			continue // not an event key of this store's (written by hand)
		}
		c.last = seq
		if shared {
			bad, ok := s.opts.Decoded.next(prefix, c.pos, seq, kv.ModRevision, kv.Value)
			if ok {
				c.pos++
				if bad != nil {
					s.markBad(key, kv.ModRevision, fmt.Errorf("event skipped: %w", bad))
				} else {
					n++
				}
				continue
			}
			// Not the key the shared record holds next: go on alone.
			events = slices.Clone(s.opts.Decoded.events(prefix, n))
			shared, c.private = false, true
		}
		var ev reconciler.Event
		if err := readEvent(kv.Value, &ev); err != nil {
			s.markBad(key, kv.ModRevision, fmt.Errorf("event skipped: %w", err))
			continue
		}
		events = append(events, ev)
	}
	if shared && n > len(events) {
		events = s.opts.Decoded.events(prefix, n)
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
	s.recMu.Lock()
	defer s.recMu.Unlock()
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
	ev, stored, err := s.decided(c, decide)
	if err != nil || ev == nil {
		return err
	}
	key := s.eventKey(app, c.last+1)
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	puts := s.withWake([]clientv3.Op{clientv3.OpPut(key, stored)}, app, c.last+1, ev)
	// On a lost race: the next record key, and the app's lease keys with
	// their revisions (no values) in one range, not a read per guarded slot
	// (a verdict at 1,000 slots, which renewals keep moving, lost with
	// 1,001 reads of whole lease values at each try).
	gets := []clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(s.leasePrefix()+app+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())}
	for slot, r := range guard {
		lk := s.leaseKey(app, slot)
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
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
			return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, &ConflictError{URL: s.url, Key: key, Actual: rr.Kvs[0].ModRevision})
		}
		actual := map[int]int64{} // guarded slot -> its mod revision now (absent: 0)
		if rr := resp.Responses[1].GetResponseRange(); rr != nil {
			for _, kv := range rr.Kvs {
				if a, slot, ok := s.parseLeaseKey(string(kv.Key)); ok && a == app {
					actual[slot] = kv.ModRevision
				}
			}
		}
		for slot, expected := range guard {
			if actual[slot] != expected {
				return fmt.Errorf("append %s to rollout record %s: %w: %w", ev.Type, app, fleetrepo.ErrGuardMoved,
					&ConflictError{URL: s.url, Key: s.leaseKey(app, slot), Expected: expected, Actual: actual[slot]})
			}
		}
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, &ConflictError{URL: s.url, Key: key})
	}
	s.extend(app, c, written(key, stored, resp.Header.Revision))
	return nil
}

// written is the key a successful append wrote, as a read returns it: the
// cache holds the event as every reader decodes it (redacted), at the
// revision of the transaction that wrote it.
func written(key, value string, rev int64) []*mvccpb.KeyValue {
	return []*mvccpb.KeyValue{{Key: []byte(key), Value: []byte(value), ModRevision: rev, CreateRevision: rev}}
}

// maxProbe is how many sequence keys past the record as read one
// AppendCommuting transaction tries, nested one in the other's else
// (each level costs one of etcd's --max-txn-ops, 128 by default).
const maxProbe = 64

// AppendCommuting is Append for an event whose meaning does not depend on
// the events other writers append at the same time (rollout.Commuting: a
// node's own outcome under its lease token). decide sees the record as
// read; one transaction puts the event at the first of the next 64
// sequence keys that is free, so it may land after events decide did not
// see. Only when all 64 were taken does it read what won and call decide
// again (up to 20 times; then a *ConflictError). The 1,000 nodes of a wave
// recording node_done at once so cost a few transactions each, not the
// hundreds Append's one key at a time costs (docs/scale.md).
func (s *Store) AppendCommuting(ctx context.Context, app string, decide func(current []reconciler.Event) (*reconciler.Event, error)) error {
	return s.appendWith(ctx, app, decide, s.commutingOnce)
}

// commutingOnce is one try of AppendCommuting: decide, then probe.
func (s *Store) commutingOnce(ctx context.Context, app string, c recordCache, decide func([]reconciler.Event) (*reconciler.Event, error)) (recordCache, error) {
	ev, stored, err := s.decided(c, decide)
	if err != nil || ev == nil {
		return c, err
	}
	first := s.eventKey(app, c.last+1)
	c, landed, err := s.probe(ctx, app, c, ev, stored)
	switch {
	case err != nil:
		return c, fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, err)
	case !landed:
		return c, fmt.Errorf("append %s to rollout record %s: the %d keys from %s were taken: %w", ev.Type, app, maxProbe, first, &ConflictError{URL: s.url, Key: first})
	}
	return c, nil
}

// probe puts value at the first free key of the maxProbe after c, in one
// transaction of nested ones. When none was free it returns c extended by
// the keys that won. Caller holds recMu.
func (s *Store) probe(ctx context.Context, app string, c recordCache, ev *reconciler.Event, value string) (recordCache, bool, error) {
	first := s.eventKey(app, c.last+1)
	var txn *clientv3.Op
	for i := maxProbe - 1; i >= 1; i-- {
		key := s.eventKey(app, c.last+1+int64(i))
		els := clientv3.OpGet(first, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.recordPrefix(app))))
		if txn != nil {
			els = *txn
		}
		t := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			s.withWake([]clientv3.Op{clientv3.OpPut(key, value)}, app, c.last+1+int64(i), ev), []clientv3.Op{els})
		txn = &t
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.CreateRevision(first), "=", 0)).
		Then(s.withWake([]clientv3.Op{clientv3.OpPut(first, value)}, app, c.last+1, ev)...).Else(*txn).Commit()
	if err != nil {
		return c, false, s.classify("append to rollout record "+app+" in", err)
	}
	if resp.Succeeded { // at the next key: the cache follows on
		return s.extend(app, c, written(first, value, resp.Header.Revision)), true, nil
	}
	nested := resp.Responses[0].GetResponseTxn()
	for nested != nil {
		if nested.Succeeded {
			return c, true, nil // past keys this cache has not read: the next read has them
		}
		if rr := nested.Responses[0].GetResponseRange(); rr != nil {
			return s.extend(app, c, rr.Kvs), false, nil
		}
		nested = nested.Responses[0].GetResponseTxn()
	}
	return c, false, fmt.Errorf("append to rollout record %s: unexpected transaction response from %s", app, s.url)
}
