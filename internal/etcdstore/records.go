package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleetops/reconciler/fleetrepo"
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
// events stay for `history`.
func (s *Store) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	if err := spec.CheckName("app", app); err != nil {
		return nil, fmt.Errorf("read rollout record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.record(ctx, app)
	return slices.Clone(c.events), err
}

// Append adds one event to the app's rollout record: decide sees the record
// as it is and returns the event to append (nil: nothing); the event is
// written as the next sequence key by a transaction that requires that key
// to be new. When another writer appended first, Append reads again and
// calls decide again (up to 20 times; then a *ConflictError). decide's
// error is returned unwrapped.
func (s *Store) Append(ctx context.Context, app string, decide func(current []reconciler.Event) (*reconciler.Event, error)) error {
	if err := spec.CheckName("app", app); err != nil {
		return fmt.Errorf("append to rollout record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range maxAppendAttempts {
		if err = s.appendOnce(ctx, app, decide); !errors.Is(err, fleetrepo.ErrConflict) {
			return err
		}
	}
	return err
}

func (s *Store) appendOnce(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	c, err := s.record(ctx, app)
	if err != nil {
		return err
	}
	ev, err := decide(slices.Clone(c.events))
	if err != nil || ev == nil {
		return err
	}
	if ev.Time.IsZero() {
		ev.Time = s.opts.Clock.Now()
	}
	if _, err := s.cas(ctx, s.eventKey(app, c.last+1), 0, ev, "append to rollout record "+app+" in"); err != nil {
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, err)
	}
	s.records[app] = recordCache{last: c.last + 1, events: append(c.events, *ev)}
	return nil
}

// record reads the events added since the cache. Caller holds mu.
func (s *Store) record(ctx context.Context, app string) (recordCache, error) {
	c := s.records[app]
	prefix := s.recordPrefix(app)
	from := s.eventKey(app, c.last+1)
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)))
	if err != nil {
		return c, fmt.Errorf("read rollout record %s: %w", app, s.classify("read rollout record "+app+" from", err))
	}
	events := c.events[:len(c.events):len(c.events)]
	for _, kv := range resp.Kvs {
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
	return c, nil
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
