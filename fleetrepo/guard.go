package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"

	"github.com/fleetops/reconciler/reconciler"
)

// ErrGuardMoved: a write conditioned on lease slots (AppendGuarded) did not
// land because one of those slots moved since the caller read it (taken,
// renewed, released, or created). Nothing was written. Re-read the leases
// and decide again. The error also matches ErrConflict and wraps the
// *ConflictError of the slot that moved.
var ErrGuardMoved = errors.New("a lease slot the write was conditioned on moved")

// ErrNoAtomicPush: the Git server does not offer atomic pushes (the
// receive-pack "atomic" capability, git 2.4 and later, on unless
// receive.advertiseAtomic is false), so a write over several refs cannot be
// made safely. It matches NeedsPerson: upgrade or reconfigure the server.
var ErrNoAtomicPush = errors.New("the server does not offer atomic pushes (receive-pack capability \"atomic\"), which a verdict on another node's lease needs")

// AppendGuarded is Append under a precondition over lease slots: the event
// lands only if every slot of guard is still at the guard's Token ("" or
// the zero hash: the slot was never written), in the same ref transaction
// as the record's compare-and-swap: one atomic push updating the record ref
// whose commands also name each guarded lease ref with its expected value
// as both old and new (git verifies them under the refs' locks and writes
// nothing to them). A never-written slot is expected absent by creating it
// free in that push (no push command can say "still absent"), so afterwards
// the slot exists, free, on every store. Every entry of guard must be a
// slot of app. When the record moved, decide is called again on the new
// record (as Append) with the same guard; when a guarded slot moved the
// error matches ErrGuardMoved and nothing was written.
func (sh *Shared) AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide func(current []reconciler.Event) (*reconciler.Event, error)) error {
	ctx = sh.fresh(ctx) // a write reads its ref afresh, never from a Snapshot
	if err := checkName("app", app); err != nil {
		return fmt.Errorf("append to rollout record: %w", err)
	}
	expect, err := guardTokens(app, guard)
	if err != nil {
		return fmt.Errorf("append to rollout record %s: %w", app, err)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	for range maxAppendAttempts {
		err = sh.appendGuardedOnce(ctx, app, expect, decide)
		if !errors.Is(err, ErrConflict) || errors.Is(err, ErrGuardMoved) {
			return err
		}
	}
	return err
}

// guardSlot is one guarded lease ref and its expected value (zero: absent).
type guardSlot struct {
	slot int
	ref  plumbing.ReferenceName
	want plumbing.Hash
}

// guardTokens checks a guard and turns it into expected ref values.
func guardTokens(app string, guard []reconciler.Lease) ([]guardSlot, error) {
	var out []guardSlot
	seen := map[int]bool{}
	for _, l := range guard {
		if l.App != app || l.Slot < 0 || seen[l.Slot] {
			return nil, fmt.Errorf("bad lease guard %s/%d: want distinct slots of app %s", l.App, l.Slot, app)
		}
		seen[l.Slot] = true
		var want plumbing.Hash
		if l.Token != "" {
			if !plumbing.IsHash(l.Token) {
				return nil, fmt.Errorf("bad lease guard %s/%d: token %q is not a commit id", l.App, l.Slot, l.Token)
			}
			want = plumbing.NewHash(l.Token)
		}
		out = append(out, guardSlot{slot: l.Slot, ref: leaseRef(app, l.Slot), want: want})
	}
	slices.SortFunc(out, func(a, b guardSlot) int { return a.slot - b.slot })
	return out, nil
}

func (sh *Shared) appendGuardedOnce(ctx context.Context, app string, guard []guardSlot, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
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
	objects := sh.s.takePending()
	cmds := []*packp.Command{{Name: ref, Old: tip, New: next}}
	created := map[plumbing.ReferenceName]plumbing.Hash{}
	for _, g := range guard {
		if !g.want.IsZero() {
			cmds = append(cmds, &packp.Command{Name: g.ref, Old: g.want, New: g.want})
			continue
		}
		now := sh.opts.Clock.Now()
		doc := leaseDoc{App: app, Slot: g.slot, Renewed: now, Note: "created free by " + sh.opts.Identity.Name + " with a verdict on the record"}
		free, err := sh.writeJSON(leaseFile, doc, plumbing.ZeroHash, fmt.Sprintf("lease %s/%d: created free (guarding %s)", app, g.slot, ev.Type))
		if err != nil {
			return fmt.Errorf("append to rollout record %s: %w", app, err)
		}
		objects = append(objects, sh.s.takePending()...)
		cmds = append(cmds, &packp.Command{Name: g.ref, Old: plumbing.ZeroHash, New: free})
		created[g.ref] = free
	}
	if err := sh.s.casAtomic(ctx, cmds, objects); err != nil {
		var conflict *ConflictError
		if errors.As(err, &conflict) && conflict.Ref != ref {
			return fmt.Errorf("append %s to rollout record %s: %w: %w", ev.Type, app, ErrGuardMoved, err)
		}
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, err)
	}
	for r, h := range created {
		if err := sh.s.setLocal(r, h); err != nil {
			return err
		}
	}
	sh.records[app] = recordCache{tip: next, events: append(events, *ev)}
	return nil
}

// takePending returns the objects of the commits built since the last
// push, for a push of several (and forgets them). Caller holds mu.
func (s *store) takePending() []plumbing.Hash {
	objs := s.pending.objects
	s.pending = pendingCommit{}
	return objs
}

// atomicPushes is false only in a test that shows what a push of the same
// commands without the atomic capability would let through.
var atomicPushes = true

// casAtomic applies cmds on the remote in one ref transaction (an atomic
// push): all land or none. cmds[0] is the ref being written (its New is
// new); the others may have New equal to Old: a precondition only. A lost
// race is a *ConflictError on the first ref found moved; as cas, losing is
// decided by re-reading the refs, never by parsing the error. Caller
// holds mu.
func (s *store) casAtomic(ctx context.Context, cmds []*packp.Command, objects []plumbing.Hash) error {
	pushErr := s.bounded(ctx, s.timeout, func(ctx context.Context) error {
		return s.push(ctx, cmds, objects, atomicPushes)
	})
	if pushErr == nil {
		return s.setLocal(cmds[0].Name, cmds[0].New)
	}
	var conflict *ConflictError
	if errors.As(pushErr, &conflict) || NeedsPerson(pushErr) && errors.Is(pushErr, ErrNoAtomicPush) {
		return pushErr
	}
	op := "push " + cmds[0].Name.String() + " (atomic, with " + fmt.Sprint(len(cmds)-1) + " lease refs) to"
	now, err := s.list(ctx, SharedPrefix)
	if err == nil && unmoved(cmds, now) && errors.Is(pushErr, ErrRejected) {
		// A writer that won the race may still hold a ref's lock (git
		// waits 100ms for it): look again once it must have finished.
		if err = sleepCtx(ctx, lockSettle); err == nil {
			now, err = s.list(ctx, SharedPrefix)
		}
	}
	if err != nil {
		return classify(op, s.url, fmt.Errorf("%w (and re-reading the refs failed: %v)", pushErr, err))
	}
	if now[cmds[0].Name] == cmds[0].New {
		return s.setLocal(cmds[0].Name, cmds[0].New) // it landed (all of it); the error came after
	}
	for _, c := range cmds {
		if now[c.Name] != c.Old {
			s.log.Debug("atomic compare-and-swap lost", "ref", c.Name, "expected", c.Old, "actual", now[c.Name], "push", pushErr)
			return &ConflictError{Repo: s.url, Ref: c.Name, Expected: c.Old, Actual: now[c.Name]}
		}
	}
	if errors.Is(pushErr, ErrRejected) {
		return fmt.Errorf("%s %s: %w", op, s.url, pushErr)
	}
	return classify(op, s.url, pushErr)
}

// sleepCtx waits d of real time (another process's ref lock, as
// headAfter) or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// unmoved reports whether every ref of cmds is still at its Old value.
func unmoved(cmds []*packp.Command, now map[plumbing.ReferenceName]plumbing.Hash) bool {
	for _, c := range cmds {
		if now[c.Name] != c.Old {
			return false
		}
	}
	return true
}
