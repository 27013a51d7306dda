package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/go-git/go-git/v5/plumbing"
)

// observation is when this handle first saw a lease ref at its token, on
// the handle's own clock. Expiry is measured from it, never from times other
// nodes wrote.
type observation struct {
	token plumbing.Hash
	since time.Time
	own   bool // this handle wrote token: since is when it sent the write
}

// leaseDoc is lease.json, the content of each lease commit.
type leaseDoc struct {
	App      string        `json:"app"`
	Slot     int           `json:"slot"`
	Holder   string        `json:"holder,omitempty"`
	Rollout  string        `json:"rollout,omitempty"`
	Acquired time.Time     `json:"acquired,omitzero"`
	Renewed  time.Time     `json:"renewed,omitzero"`
	TTL      time.Duration `json:"ttl"`
	Note     string        `json:"note,omitempty"` // "released", "broken by operator", ...
}

func leaseRef(app string, slot int) plumbing.ReferenceName {
	return plumbing.ReferenceName(fmt.Sprintf("%s%s/%d", LeasePrefix, app, slot))
}

func checkLease(app string, slot int) error {
	if slot < 0 {
		return fmt.Errorf("invalid lease slot %d for app %s: slots count from 0", slot, app)
	}
	return checkName("app", app)
}

// observe records token as the lease's current value, seen at now (or keeps
// the earlier time when unchanged), and returns the lease as it looks now.
// Caller holds mu.
func (sh *Shared) observe(ref plumbing.ReferenceName, token plumbing.Hash, doc leaseDoc, now time.Time) reconciler.Lease {
	o, ok := sh.seen[ref]
	if !ok || o.token != token {
		o = observation{token: token, since: now}
		sh.seen[ref] = o
	}
	return reconciler.Lease{
		App: doc.App, Slot: doc.Slot, Holder: doc.Holder, Rollout: doc.Rollout,
		Acquired: doc.Acquired, Renewed: doc.Renewed, TTL: doc.TTL,
		Token: token.String(), Unchanged: sh.opts.Clock.Now().Sub(o.since),
	}
}

// readLease fetches and reads one slot (a free zero lease when absent). Caller holds mu.
func (sh *Shared) readLease(ctx context.Context, app string, slot int) (reconciler.Lease, plumbing.Hash, error) {
	ref := leaseRef(app, slot)
	tip, err := sh.tip(ctx, ref)
	if err != nil {
		return reconciler.Lease{}, tip, err
	}
	var doc leaseDoc
	if !tip.IsZero() {
		if err := sh.readJSON(tip, leaseFile, &doc); err != nil {
			sh.markBad(ref, tip, err)
			return reconciler.Lease{}, tip, fmt.Errorf("lease %s/%d at %s: %w: %w (leases break overwrites it)", app, slot, short(tip), ErrBadLease, err)
		}
	}
	doc.App, doc.Slot = app, slot
	return sh.observe(ref, tip, doc, sh.opts.Clock.Now()), tip, nil
}

// ErrBadLease means a lease ref does not hold a readable lease.json: no
// one can take the slot until `leases break` overwrites it (Break does).
var ErrBadLease = errors.New("unreadable lease")

// Acquire takes slot of app's lease set for holder and rollout. It succeeds
// when the slot is free (never used, released or broken), when its holder's
// lease has expired as this handle sees it (unchanged for its TTL on this
// handle's clock: a handle that just opened must watch a lease for a full TTL
// before it can take it over), or when holder already holds it. Otherwise
// the error matches ErrLeaseHeld and the lease returned is the one seen; a
// lost race matches ErrConflict.
func (sh *Shared) Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error) {
	ctx = sh.fresh(ctx) // a write reads its ref afresh, never from a Snapshot
	if err := checkLease(app, slot); err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	if holder == "" || ttl <= 0 {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d: need a holder and a positive TTL", app, slot)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	cur, tip, err := sh.readLease(ctx, app, slot)
	if err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d: %w", app, slot, err)
	}
	if cur.Held() && !cur.Expired() && cur.Holder != holder {
		return cur, fmt.Errorf("acquire lease %s/%d: held by %s for rollout %s, unchanged for %s of its %s TTL: %w",
			app, slot, cur.Holder, cur.Rollout, cur.Unchanged.Round(time.Millisecond), cur.TTL, ErrLeaseHeld)
	}
	now := sh.opts.Clock.Now()
	doc := leaseDoc{App: app, Slot: slot, Holder: holder, Rollout: rollout, Acquired: now, Renewed: now, TTL: ttl}
	msg := fmt.Sprintf("lease %s/%d: acquired by %s for rollout %s", app, slot, holder, rollout)
	if cur.Held() && cur.Holder != holder {
		msg = fmt.Sprintf("lease %s/%d: taken over by %s from %s (unchanged for %s)", app, slot, holder, cur.Holder, cur.Unchanged.Round(time.Millisecond))
	}
	l, err := sh.writeLease(ctx, doc, tip, msg, now)
	if err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d for %s: %w", app, slot, holder, err)
	}
	return l, nil
}

// writeLease commits doc after parent and swaps the ref. The observation of
// the new token starts at sent, a time taken before the push: the holder's
// view of its own lease is never longer than any observer's. Caller holds mu.
func (sh *Shared) writeLease(ctx context.Context, doc leaseDoc, parent plumbing.Hash, msg string, sent time.Time) (reconciler.Lease, error) {
	ref := leaseRef(doc.App, doc.Slot)
	next, err := sh.writeJSON(leaseFile, doc, parent, msg)
	if err != nil {
		return reconciler.Lease{}, err
	}
	if err := sh.s.cas(ctx, ref, parent, next); err != nil {
		if !errors.Is(err, ErrConflict) {
			sh.sentLost(next, sent, doc.TTL)
		}
		return reconciler.Lease{}, err
	}
	delete(sh.lost, next)
	sh.seen[ref] = observation{token: next, since: sent, own: true}
	return sh.observe(ref, next, doc, sent), nil
}

// Renew extends a held lease: a compare-and-swap on its token. After a
// takeover, break or release the error matches ErrLeaseLost and the caller
// must stop acting under the lease. A *TransientError leaves the lease as it
// was: retry while Validity says it is still held.
func (sh *Shared) Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error) {
	return sh.rewrite(ctx, l, "renew", func(doc *leaseDoc, now time.Time) string {
		doc.Renewed = now
		return fmt.Sprintf("lease %s/%d: renewed by %s", l.App, l.Slot, l.Holder)
	})
}

// Release frees a held lease. ErrLeaseLost when it was no longer held.
func (sh *Shared) Release(ctx context.Context, l reconciler.Lease) error {
	_, err := sh.rewrite(ctx, l, "release", func(doc *leaseDoc, now time.Time) string {
		*doc = leaseDoc{App: l.App, Slot: l.Slot, TTL: l.TTL, Renewed: now, Note: "released by " + l.Holder}
		return fmt.Sprintf("lease %s/%d: released by %s", l.App, l.Slot, l.Holder)
	})
	return err
}

// rewrite swaps the lease from l.Token to an edited copy.
func (sh *Shared) rewrite(ctx context.Context, l reconciler.Lease, op string, edit func(*leaseDoc, time.Time) string) (reconciler.Lease, error) {
	ctx = sh.fresh(ctx) // a write reads its ref afresh, never from a Snapshot
	if err := checkLease(l.App, l.Slot); err != nil || l.Token == "" || l.Holder == "" {
		return l, fmt.Errorf("%s lease %s/%d: not a held lease (%v)", op, l.App, l.Slot, err)
	}
	token := plumbing.NewHash(l.Token)
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	if err := sh.haveCommit(ctx, leaseRef(l.App, l.Slot), token); err != nil {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w", op, l.App, l.Slot, l.Holder, err)
	}
	now := sh.opts.Clock.Now()
	doc := leaseDoc{App: l.App, Slot: l.Slot, Holder: l.Holder, Rollout: l.Rollout, Acquired: l.Acquired, Renewed: l.Renewed, TTL: l.TTL}
	msg := edit(&doc, now)
	if op == "renew" && sh.expiredLocked(l, now) {
		// Expired on this handle's clock: observers may have taken the
		// slot over or recorded the holder failed, and a renewal landing
		// now would revive the lease behind their backs (a holder stopped
		// or starved past its TTL). Only a write of this holding that
		// landed within the TTL (its answer lost) kept it alive.
		own, ok := sh.ownSuccessor(ctx, l, token)
		if at, sent := sh.lost[own]; !ok || !sent || elapsed(now, at.sent) >= l.TTL {
			return l, fmt.Errorf("renew lease %s/%d held by %s: %w: expired on this node's clock (no renewal landed within its %s TTL); take a new lease",
				l.App, l.Slot, l.Holder, ErrLeaseLost, l.TTL)
		}
		token = own
	}
	next, err := sh.writeLease(ctx, doc, token, msg, now)
	if errors.Is(err, ErrConflict) {
		// The slot moved past l.Token. If every commit since is this same
		// holding (a write of ours that landed but whose answer was lost),
		// adopt the newest and write on top of it; otherwise it is lost.
		if own, ok := sh.ownSuccessor(ctx, l, token); ok {
			next, err = sh.writeLease(ctx, doc, own, msg, now)
		}
	}
	if errors.Is(err, ErrConflict) {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w: %w", op, l.App, l.Slot, l.Holder, ErrLeaseLost, err)
	}
	if err != nil {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w", op, l.App, l.Slot, l.Holder, err)
	}
	return next, nil
}

// maxOwnSuccessors bounds how many lost answers in a row a holder recovers
// from by recognising its own commits.
const maxOwnSuccessors = 16

// ownSuccessor returns the slot's current tip when it descends from token
// through commits of the same holding as l only (same holder, rollout and
// acquisition time): renewals of l's own that landed while their answers
// were lost. Caller holds mu.
func (sh *Shared) ownSuccessor(ctx context.Context, l reconciler.Lease, token plumbing.Hash) (plumbing.Hash, bool) {
	tip, err := sh.tip(ctx, leaseRef(l.App, l.Slot))
	if err != nil || tip.IsZero() {
		return tip, false
	}
	for h, n := tip, 0; !h.IsZero() && n < maxOwnSuccessors; n++ {
		var doc leaseDoc
		if err := sh.readJSON(h, leaseFile, &doc); err != nil {
			return tip, false
		}
		if doc.Holder != l.Holder || doc.Rollout != l.Rollout || !doc.Acquired.Equal(l.Acquired) || doc.TTL != l.TTL {
			return tip, false // another holding came in between: taken over, broken or released
		}
		p, err := sh.parent(h)
		if err != nil {
			return tip, false
		}
		if p == token {
			return tip, true
		}
		h = p
	}
	return tip, false
}

// haveCommit makes sure token is in the cache (a lease read by another
// handle); when the ref moved past it the lease is lost. Caller holds mu.
func (sh *Shared) haveCommit(ctx context.Context, ref plumbing.ReferenceName, token plumbing.Hash) error {
	if _, err := sh.s.repo.CommitObject(token); err == nil {
		return nil
	}
	tip, err := sh.tip(ctx, ref)
	if err != nil {
		return err
	}
	if tip != token {
		return fmt.Errorf("%w: %w", ErrLeaseLost, &ConflictError{Repo: sh.s.url, Ref: ref, Expected: token, Actual: tip})
	}
	return nil
}

// Validity is how much longer the caller may act under l, on this handle's
// clock: l.TTL minus the time since this handle sent the write that made
// l.Token. Zero or less: the lease must be treated as lost, even if no one
// has taken it over yet; do not start a switch. A lease this handle did not
// write (a restarted holder finding its lease) has no validity until renewed.
//
// The time since is the larger of the monotonic and the wall-clock reading:
// Linux's monotonic clock stops while the machine is suspended, the wall
// clock does not (it is stepped forward on resume), so a holder that slept
// through its TTL sees its validity gone either way. Callers subtract their
// own margin for clock-rate skew (docs/shared-state.md, "Validity").
func (sh *Shared) Validity(l reconciler.Lease) time.Duration {
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	return sh.validityLocked(l)
}

// validityLocked is Validity. Caller holds mu.
func (sh *Shared) validityLocked(l reconciler.Lease) time.Duration {
	o, ok := sh.seen[leaseRef(l.App, l.Slot)]
	if !ok || !o.own || o.token.String() != l.Token {
		return 0
	}
	return l.TTL - elapsed(sh.opts.Clock.Now(), o.since)
}

// expiredLocked reports whether this handle's last word on l's holding is
// older than its TTL: the write it last saw land (or sent unanswered) for
// the slot. With no write of this handle's (a holder restarted) it has no
// measure; the engine judged the lease on a fresh record. Caller holds mu.
func (sh *Shared) expiredLocked(l reconciler.Lease, now time.Time) bool {
	o, ok := sh.seen[leaseRef(l.App, l.Slot)]
	if w, sent := sh.lost[o.token]; ok && sent {
		return elapsed(now, w.sent) >= l.TTL
	}
	return ok && o.own && elapsed(now, o.since) >= l.TTL
}

// elapsed is the time from since to now, the longer of the monotonic and
// the wall clock's reading (a clock that stood still during a suspend, or
// one stepped back, must not lengthen a lease).
func elapsed(now, since time.Time) time.Duration {
	return max(now.Sub(since), now.Round(0).Sub(since.Round(0)))
}

// lostWrite is a lease write whose answer never came: it may have landed.
type lostWrite struct {
	sent time.Time
	ttl  time.Duration
}

// sentLost remembers a lease write whose answer was lost, for a renewal
// that finds it landed (rewrite), and forgets those too old to matter.
// Caller holds mu.
func (sh *Shared) sentLost(token plumbing.Hash, sent time.Time, ttl time.Duration) {
	now := sh.opts.Clock.Now()
	for h, w := range sh.lost {
		if elapsed(now, w.sent) >= w.ttl {
			delete(sh.lost, h)
		}
	}
	sh.lost[token] = lostWrite{sent: sent, ttl: ttl}
}

// Break frees a slot whatever its state (an operator's act, for a holder
// that is known dead). It returns the lease as it was before.
func (sh *Shared) Break(ctx context.Context, app string, slot int) (reconciler.Lease, error) {
	ctx = sh.fresh(ctx) // a write reads its ref afresh, never from a Snapshot
	if err := checkLease(app, slot); err != nil {
		return reconciler.Lease{}, fmt.Errorf("break lease: %w", err)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	cur, tip, err := sh.readLease(ctx, app, slot)
	if errors.Is(err, ErrBadLease) {
		return cur, sh.overwriteBad(ctx, app, slot, tip)
	}
	if err != nil || !cur.Held() {
		return cur, wrapIf(err, "break lease %s/%d", app, slot)
	}
	now := sh.opts.Clock.Now()
	doc := leaseDoc{App: app, Slot: slot, TTL: cur.TTL, Renewed: now,
		Note: fmt.Sprintf("broken by %s (was held by %s)", sh.opts.Identity.Name, cur.Holder)}
	msg := fmt.Sprintf("lease %s/%d: broken by %s (was held by %s)", app, slot, sh.opts.Identity.Name, cur.Holder)
	if _, err := sh.writeLease(ctx, doc, tip, msg, now); err != nil {
		return cur, fmt.Errorf("break lease %s/%d held by %s: %w", app, slot, cur.Holder, err)
	}
	return cur, nil
}

// overwriteBad replaces an unreadable lease at tip with a free one (on
// top of tip when it is a commit, else as a new root). Caller holds mu.
func (sh *Shared) overwriteBad(ctx context.Context, app string, slot int, tip plumbing.Hash) error {
	ref := leaseRef(app, slot)
	parent := tip
	if _, err := sh.s.repo.CommitObject(tip); err != nil {
		parent = plumbing.ZeroHash
	}
	now := sh.opts.Clock.Now()
	doc := leaseDoc{App: app, Slot: slot, Renewed: now, Note: "unreadable lease overwritten by " + sh.opts.Identity.Name}
	msg := fmt.Sprintf("lease %s/%d: unreadable lease %s overwritten by %s", app, slot, short(tip), sh.opts.Identity.Name)
	next, err := sh.writeJSON(leaseFile, doc, parent, msg)
	if err == nil {
		err = sh.s.cas(ctx, ref, tip, next)
	}
	if err != nil {
		return fmt.Errorf("break unreadable lease %s/%d: %w", app, slot, err)
	}
	sh.forget(ref)
	sh.seen[ref] = observation{token: next, since: now, own: true}
	return nil
}

func wrapIf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// Leases returns every slot of app's lease set that was ever used, by slot,
// free ones included (an unreadable one is skipped and named by BadRefs); app "" returns every app's, by app then slot.
// Unchanged is measured on this handle's clock from when it first saw each
// lease's current token, so call it regularly to let expiry be observed.
func (sh *Shared) Leases(ctx context.Context, app string) ([]reconciler.Lease, error) {
	prefix := LeasePrefix
	if app != "" {
		if err := checkName("app", app); err != nil {
			return nil, fmt.Errorf("read leases: %w", err)
		}
		prefix += app + "/"
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	refs, bad, err := sh.currentReadable(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("read leases of %s: %w", orAll(app), err)
	}
	defer sh.markGood(prefix, bad)
	now := sh.opts.Clock.Now()
	var out []reconciler.Lease
	for ref, tip := range refs {
		a, s, ok := parseLeaseRef(ref)
		if !ok {
			continue
		}
		var doc leaseDoc
		if err := sh.readJSON(tip, leaseFile, &doc); err != nil {
			sh.markBad(ref, tip, fmt.Errorf("read lease: %w", err))
			bad[ref] = true
			continue
		}
		doc.App, doc.Slot = a, s // the ref names the slot, whatever the file says
		out = append(out, sh.observe(ref, tip, doc, now))
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

func parseLeaseRef(ref plumbing.ReferenceName) (app string, slot int, ok bool) {
	app, s, ok := strings.Cut(strings.TrimPrefix(ref.String(), LeasePrefix), "/")
	n, err := strconv.Atoi(s)
	return app, n, ok && err == nil && n >= 0 && checkName("app", app) == nil
}

// LeaseHistory returns the writes of one slot, newest first, at most limit
// (0: all): each as the lease it made, with Token its commit id and
// Unchanged zero. For audits and fencing checks: the holding a token belongs
// to runs from the commit that gave its holder the slot to the next commit
// with another holder or none.
func (sh *Shared) LeaseHistory(ctx context.Context, app string, slot int, limit int) ([]reconciler.Lease, error) {
	if err := checkLease(app, slot); err != nil {
		return nil, fmt.Errorf("lease history: %w", err)
	}
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	tip, err := sh.tip(ctx, leaseRef(app, slot))
	if err != nil {
		return nil, fmt.Errorf("lease history of %s/%d: %w", app, slot, err)
	}
	var out []reconciler.Lease
	for h := tip; !h.IsZero() && (limit <= 0 || len(out) < limit); {
		var doc leaseDoc
		if err := sh.readJSON(h, leaseFile, &doc); err != nil {
			return out, fmt.Errorf("lease history of %s/%d: %w", app, slot, err)
		}
		out = append(out, reconciler.Lease{App: app, Slot: slot, Holder: doc.Holder, Rollout: doc.Rollout,
			Acquired: doc.Acquired, Renewed: doc.Renewed, TTL: doc.TTL, Token: h.String()})
		if h, err = sh.parent(h); err != nil {
			return out, fmt.Errorf("lease history of %s/%d: %w", app, slot, err)
		}
	}
	return out, nil
}
