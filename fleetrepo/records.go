package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/go-git/go-git/v5/plumbing"
)

// maxAppendAttempts bounds Append's re-decide loop under contention.
const maxAppendAttempts = 20

// recordCache is an app's rollout record as of tip, so a read walks only the
// commits added since.
type recordCache struct {
	tip    plumbing.Hash
	events []reconciler.Event
}

// Record returns the events of refs/reconciler/rollouts/<app>, oldest first
// (nil when the app has no record).
func (sh *Shared) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	if err := checkName("app", app); err != nil {
		return nil, fmt.Errorf("read rollout record: %w", err)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	events, _, err := sh.record(ctx, app)
	return slices.Clone(events), err
}

// Append adds one event to the app's rollout record by compare-and-swap.
// decide sees the record as it is and returns the event to append, or nil
// to append nothing; when another writer appended first, Append reads the
// record again and calls decide again. decide must not block or touch the
// handle. It returns decide's error unwrapped, or *ConflictError after 20
// lost races.
func (sh *Shared) Append(ctx context.Context, app string, decide func(current []reconciler.Event) (*reconciler.Event, error)) error {
	ctx = sh.fresh(ctx) // a write reads its ref afresh, never from a Snapshot
	if err := checkName("app", app); err != nil {
		return fmt.Errorf("append to rollout record: %w", err)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	var err error
	for range maxAppendAttempts {
		if err = sh.appendOnce(ctx, app, decide); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
}

func (sh *Shared) appendOnce(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	events, tip, err := sh.record(ctx, app)
	if err != nil {
		return err
	}
	ev, err := decide(slices.Clone(events))
	if err != nil || ev == nil {
		return err
	}
	if ev.Time.IsZero() {
		ev.Time = sh.opts.Clock.Now()
	}
	ref := plumbing.ReferenceName(RolloutPrefix + app)
	next, err := sh.writeJSON(eventFile, ev, tip, eventSummary(app, *ev))
	if err != nil {
		return fmt.Errorf("append to rollout record %s: %w", app, err)
	}
	if err := sh.s.cas(ctx, ref, tip, next); err != nil {
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, err)
	}
	sh.records[app] = recordCache{tip: next, events: append(events, *ev)}
	return nil
}

// record reads the record's tip and walks the commits added since the cached
// tip. The returned slice must not be modified. Caller holds mu.
func (sh *Shared) record(ctx context.Context, app string) ([]reconciler.Event, plumbing.Hash, error) {
	ref := plumbing.ReferenceName(RolloutPrefix + app)
	tip, err := sh.tip(ctx, ref)
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("read rollout record %s: %w", app, err)
	}
	if tip.IsZero() {
		delete(sh.records, app)
		return nil, tip, nil
	}
	cached := sh.records[app]
	if tip == cached.tip {
		return cached.events[:len(cached.events):len(cached.events)], tip, nil
	}
	var newer []reconciler.Event
	var garbage error
	h := tip
	for !h.IsZero() && h != cached.tip {
		var ev reconciler.Event
		if err := sh.readEvent(h, &ev); err != nil {
			garbage = fmt.Errorf("event %s skipped: %w", short(h), err) // the last found: the oldest
			sh.markBad(ref, h, garbage)
		} else {
			newer = append(newer, ev)
		}
		if h, err = sh.parent(h); err != nil {
			return nil, tip, fmt.Errorf("read rollout record %s: %w", app, err)
		}
	}
	var base []reconciler.Event
	if h == cached.tip {
		base = cached.events
	}
	if garbage == nil && cached.tip.IsZero() {
		sh.forget(ref)
	}
	slices.Reverse(newer)
	events := append(slices.Clone(base), newer...)
	sh.records[app] = recordCache{tip: tip, events: events}
	return events[:len(events):len(events)], tip, nil
}

// readEvent reads the event of one record commit: a file that does not
// decode, or an event of no known type or rollout, is garbage.
func (sh *Shared) readEvent(h plumbing.Hash, ev *reconciler.Event) error {
	if err := sh.readJSON(h, eventFile, ev); err != nil {
		return err
	}
	if !reconciler.KnownEventType(ev.Type) || ev.Rollout == "" {
		return fmt.Errorf("%s of commit %s: not a rollout event (type %q, rollout %q)", eventFile, short(h), ev.Type, ev.Rollout)
	}
	return nil
}

// KnownEvent reports whether t is a rollout event type readers accept
// (other stores of the shared state use the same list).
func KnownEvent(t string) bool { return reconciler.KnownEventType(t) }

// parent returns the first parent of a commit (zero for a root).
func (sh *Shared) parent(h plumbing.Hash) (plumbing.Hash, error) {
	c, err := sh.s.repo.CommitObject(h)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", short(h), err)
	}
	if len(c.ParentHashes) == 0 {
		return plumbing.ZeroHash, nil
	}
	return c.ParentHashes[0], nil
}

// eventSummary is the commit message of a rollout event: "web: wave_done
// wave 1 (by n2)" (reconciler.Event.Summary, waves counted from 1).
func eventSummary(app string, ev reconciler.Event) string {
	s := app + ": " + ev.Summary()
	if ev.By != "" {
		s += " (by " + ev.By + ")"
	}
	return s
}
