// Package storetest is the one conformance suite of the shared-state stores:
// the Git store (fleetrepo, on a bare repository or over git http-backend),
// the etcd store (internal/etcdstore) and the simulation's memory store
// (internal/fleetsim). Run calls each case with a Factory; storetest_test.go
// runs it against every store, so the stores cannot drift apart on the
// semantics the coordinator's safety rests on (agent/rollout.Shared):
// compare-and-swap, fencing tokens, expiry as observed, re-deciding appends,
// reports and the errors' types.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// Store is what the suite exercises: rollout.Shared, the agent's reporter,
// and the lease history audits use.
type Store interface {
	Reports(ctx context.Context) (map[string]reconciler.NodeReport, error)
	WriteReport(ctx context.Context, r reconciler.NodeReport) error
	Record(ctx context.Context, app string) ([]reconciler.Event, error)
	Append(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error
	AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide func([]reconciler.Event) (*reconciler.Event, error)) error
	Leases(ctx context.Context, app string) ([]reconciler.Lease, error)
	Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error)
	Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error)
	Release(ctx context.Context, l reconciler.Lease) error
	Validity(l reconciler.Lease) time.Duration
	LeaseHistory(ctx context.Context, app string, slot int, limit int) ([]reconciler.Lease, error)
}

// Opener opens one more handle (one agent's connection) to the same
// backing store, for node, on clock c.
type Opener func(node string, c clock.Clock) Store

// Factory makes the stores of one kind.
type Factory struct {
	// New makes a fresh, empty backing store for one test.
	New func(t *testing.T) Opener
	// Unreachable opens a handle to a store of this kind that cannot be
	// reached (nothing listens): every call must fail as transient.
	Unreachable func(t *testing.T) Store
}

// Run runs every case against the stores of f; reference, when set, is the
// bare-repository Git store, whose transcript of one long script f's must
// equal step by step.
func Run(t *testing.T, f Factory, reference *Factory) {
	t.Run("Transcript", func(t *testing.T) {
		if reference == nil {
			t.Skip("this is the reference store")
		}
		if testing.Short() {
			t.Skip("-short: the reference store runs git")
		}
		compare(t, Transcript(t, f.New(t)), Transcript(t, reference.New(t)))
	})
	t.Run("AppendConflictRedecides", func(t *testing.T) { appendConflict(t, f.New(t)) })
	t.Run("GuardedAppend", func(t *testing.T) { guardedAppend(t, f.New(t)) })
	t.Run("TwoAcquirersOneWinner", func(t *testing.T) { oneWinner(t, f.New(t)) })
	t.Run("StaleTokenRefused", func(t *testing.T) { staleToken(t, f.New(t)) })
	t.Run("ReleaseFreesAtOnce", func(t *testing.T) { release(t, f.New(t)) })
	t.Run("ExpiryAndValidity", func(t *testing.T) { expiry(t, f.New(t)) })
	t.Run("ExpiredLeaseNotRenewed", func(t *testing.T) { expiredNotRenewed(t, f.New(t)) })
	t.Run("ReportsRoundTrip", func(t *testing.T) { reports(t, f.New(t)) })
	t.Run("EveryEventTypeRoundTrips", func(t *testing.T) { everyEventType(t, f.New(t)) })
	t.Run("TypedErrors", func(t *testing.T) { typedErrors(t, f) })
}

func compare(t *testing.T, got, want []string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("step %d differs:\n  reference (bare repo): %s\n  this store:            %s", i, w, g)
		}
	}
}

const ttl = 30 * time.Second

// appendConflict: another writer appends while decide runs; the append
// lands after it, decide having been called again on the longer record.
func appendConflict(t *testing.T, open Opener) {
	ctx := context.Background()
	a, b := open("a", clock.NewFake(time.Time{})), open("b", clock.NewFake(time.Time{}))
	calls := 0
	err := a.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
		calls++
		if calls == 1 {
			if err := b.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
				return &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", By: "b", Target: "1.1.0"}, nil
			}); err != nil {
				t.Fatalf("b appends inside a's decide: %v", err)
			}
		}
		if len(cur) == 1 && cur[0].By != "b" {
			t.Errorf("a's decide sees %+v, want b's event", cur)
		}
		return &reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", By: "a", Reason: "len" + fmt.Sprint(len(cur))}, nil
	})
	if err != nil {
		t.Fatalf("a's append: %v", err)
	}
	if calls != 2 {
		t.Fatalf("decide called %d times, want 2 (once more after the lost race)", calls)
	}
	rec, err := open("c", clock.NewFake(time.Time{})).Record(ctx, "web")
	if err != nil || len(rec) != 2 || rec[0].By != "b" || rec[1].By != "a" || rec[1].Reason != "len1" {
		t.Fatalf("record = %+v, %v; want b's started then a's event decided on 1 event", rec, err)
	}
}

// guardedAppend: an append conditioned on lease slots lands only while
// each is at the token the caller read ("": never written; such a slot
// exists, free, afterwards); when one moved, before the write or while
// decide runs, nothing is written and the error matches ErrGuardMoved; a
// record that moved is decided again under the same guard.
func guardedAppend(t *testing.T, open Opener) {
	ctx := context.Background()
	a, b, o := open("a", clock.NewFake(time.Time{})), open("b", clock.NewFake(time.Time{})), open("o", clock.NewFake(time.Time{}))
	verdict := func(reason string) func([]reconciler.Event) (*reconciler.Event, error) {
		return func([]reconciler.Event) (*reconciler.Event, error) {
			return &reconciler.Event{Type: reconciler.EventNodeUnreachable, Rollout: "r1", Node: "c", By: "o", Reason: reason}, nil
		}
	}
	record := func(want ...string) {
		t.Helper()
		rec, err := o.Record(ctx, "web")
		var got []string
		for _, e := range rec {
			got = append(got, e.Reason)
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("record = %q, %v; want %q", got, err, want)
		}
	}
	guardOf := func(upTo int) []reconciler.Lease {
		t.Helper()
		ls, err := o.Leases(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		g := make([]reconciler.Lease, upTo)
		for s := range g {
			g[s] = reconciler.Lease{App: "web", Slot: s}
		}
		for _, l := range ls {
			g[l.Slot] = l
		}
		return g
	}
	la, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	// Unchanged: it lands, and the never-written slot 1 now exists, free.
	if err := o.AppendGuarded(ctx, "web", guardOf(2), verdict("e1")); err != nil {
		t.Fatalf("guarded append, nothing moved: %v", err)
	}
	record("e1")
	if ls, err := b.Leases(ctx, "web"); err != nil || len(ls) != 2 || ls[0].Token != la.Token || ls[1].Held() || ls[1].Token == "" {
		t.Fatalf("leases after the guarded append = %+v, %v; want a's slot 0 as it was and slot 1 free", ls, err)
	}
	// A renewal after the read: refused, nothing written anywhere.
	g := guardOf(2)
	la, err = a.Renew(ctx, la)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.AppendGuarded(ctx, "web", g, verdict("e2")); !errors.Is(err, fleetrepo.ErrGuardMoved) || !errors.Is(err, fleetrepo.ErrConflict) || fleetrepo.IsTransient(err) {
		t.Fatalf("guarded append after the slot was renewed: %v, want ErrGuardMoved (and ErrConflict)", err)
	}
	record("e1")
	// A never-written slot taken after the read (the race of issue 17
	// bug 2: a lease taken between an observer's read and its verdict).
	g = guardOf(3)
	lb, err := b.Acquire(ctx, "web", 2, "b", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.AppendGuarded(ctx, "web", g, verdict("e3")); !errors.Is(err, fleetrepo.ErrGuardMoved) {
		t.Fatalf("guarded append after a never-written slot was taken: %v, want ErrGuardMoved", err)
	}
	record("e1")
	if ls, _ := o.Leases(ctx, "web"); len(ls) != 3 || ls[2].Token != lb.Token || ls[2].Holder != "b" {
		t.Fatalf("slot 2 after the refused append = %+v, want b's lease untouched", ls)
	}
	// The slot moves while decide runs: refused all the same.
	g = guardOf(3)
	calls := 0
	err = o.AppendGuarded(ctx, "web", g, func(cur []reconciler.Event) (*reconciler.Event, error) {
		if calls++; calls == 1 {
			if _, err := b.Renew(ctx, lb); err != nil {
				t.Errorf("b renews inside o's decide: %v", err)
			}
		}
		return verdict("e4")(cur)
	})
	if !errors.Is(err, fleetrepo.ErrGuardMoved) {
		t.Fatalf("guarded append with a slot renewed during decide: %v, want ErrGuardMoved", err)
	}
	record("e1")
	// The record moves while decide runs: decided again, under the guard.
	g, calls = guardOf(3), 0
	err = o.AppendGuarded(ctx, "web", g, func(cur []reconciler.Event) (*reconciler.Event, error) {
		if calls++; calls == 1 {
			if err := b.Append(ctx, "web", verdict("b1")); err != nil {
				t.Errorf("b appends inside o's decide: %v", err)
			}
		}
		return verdict(fmt.Sprintf("e5 on %d", len(cur)))(cur)
	})
	if err != nil || calls != 2 {
		t.Fatalf("guarded append with a record that moved: %v after %d decides, want it landed on the second", err, calls)
	}
	record("e1", "b1", "e5 on 2")
	if err := o.AppendGuarded(ctx, "other", g, verdict("x")); err == nil || errors.Is(err, fleetrepo.ErrGuardMoved) {
		t.Fatalf("guard of another app's slots: %v, want a plain error", err)
	}
}

// oneWinner: concurrent acquirers of one free slot, each on its own handle:
// exactly one wins; the others see it held or lose the race.
func oneWinner(t *testing.T, open Opener) {
	ctx := context.Background()
	const n = 4
	hs := make([]Store, n)
	for i := range hs {
		hs[i] = open(fmt.Sprintf("n%d", i), clock.System{})
	}
	for round := range 3 {
		errs := make(chan error, n)
		for i, h := range hs {
			go func() {
				_, err := h.Acquire(ctx, "web", round, fmt.Sprintf("n%d", i), "r1", ttl)
				errs <- err
			}()
		}
		wins := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				wins++
			case errors.Is(err, fleetrepo.ErrLeaseHeld), errors.Is(err, fleetrepo.ErrConflict):
			default:
				t.Errorf("round %d: unexpected error %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins)
		}
	}
}

// staleToken: after a takeover, the former holder's renewal and release are
// refused as lost, and the new holder's token differs.
func staleToken(t *testing.T, open Opener) {
	ctx := context.Background()
	ca, cb := clock.NewFake(time.Time{}), clock.NewFake(time.Time{})
	a, b := open("a", ca), open("b", cb)
	la, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Leases(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	cb.Advance(ttl)
	lb, err := b.Acquire(ctx, "web", 0, "b", "r1", ttl)
	if err != nil {
		t.Fatalf("b takes over a lease unchanged for its TTL: %v", err)
	}
	if lb.Token == la.Token || lb.Token == "" {
		t.Fatalf("takeover token %q, a's %q: want a new one", lb.Token, la.Token)
	}
	if _, err := a.Renew(ctx, la); !errors.Is(err, fleetrepo.ErrLeaseLost) {
		t.Fatalf("a renews a lease taken over: %v, want ErrLeaseLost", err)
	}
	if err := a.Release(ctx, la); !errors.Is(err, fleetrepo.ErrLeaseLost) {
		t.Fatalf("a releases a lease taken over: %v, want ErrLeaseLost", err)
	}
	if a.Validity(lb) > 0 {
		t.Fatal("a has validity on b's token")
	}
	if lb2, err := b.Renew(ctx, lb); err != nil || b.Validity(lb2) <= 0 {
		t.Fatalf("b renews its own lease: %v (validity %s)", err, b.Validity(lb2))
	}
}

// release: a released slot is free for anyone at once, whatever the TTL.
func release(t *testing.T, open Opener) {
	ctx := context.Background()
	a, b := open("a", clock.NewFake(time.Time{})), open("b", clock.NewFake(time.Time{}))
	la, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx, "web", 0, "b", "r1", ttl); !errors.Is(err, fleetrepo.ErrLeaseHeld) {
		t.Fatalf("b acquires a held lease: %v, want ErrLeaseHeld", err)
	}
	if err := a.Release(ctx, la); err != nil {
		t.Fatal(err)
	}
	ls, err := b.Leases(ctx, "web")
	if err != nil || len(ls) != 1 || ls[0].Held() {
		t.Fatalf("leases after release = %+v, %v; want one free slot", ls, err)
	}
	if _, err := b.Acquire(ctx, "web", 0, "b", "r1", ttl); err != nil {
		t.Fatalf("b acquires the released slot: %v", err)
	}
	hist, err := b.LeaseHistory(ctx, "web", 0, 0)
	if err != nil || len(hist) != 3 || hist[0].Holder != "b" || hist[1].Holder != "" || hist[2].Holder != "a" {
		t.Fatalf("history = %+v, %v; want b, free, a (newest first)", hist, err)
	}
}

// expiry: a held lease expires for an observer only after it saw it
// unchanged for its TTL; the holder's validity counts down from its write.
func expiry(t *testing.T, open Opener) {
	ctx := context.Background()
	ca, cb := clock.NewFake(time.Time{}), clock.NewFake(time.Time{})
	a, b := open("a", ca), open("b", cb)
	la, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if v := a.Validity(la); v != ttl {
		t.Fatalf("validity right after acquiring = %s, want %s", v, ttl)
	}
	ca.Advance(10 * time.Second)
	if v := a.Validity(la); v != ttl-10*time.Second {
		t.Fatalf("validity 10s later = %s", v)
	}
	cb.Advance(time.Hour) // b's clock: nothing seen yet, so nothing expired
	ls, _ := b.Leases(ctx, "web")
	if len(ls) != 1 || ls[0].Expired() || ls[0].Unchanged != 0 {
		t.Fatalf("b's first look = %+v: a lease first seen now is not expired", ls)
	}
	cb.Advance(ttl - time.Millisecond)
	if ls, _ := b.Leases(ctx, "web"); ls[0].Expired() {
		t.Fatal("expired before a full TTL unchanged")
	}
	cb.Advance(time.Millisecond)
	if ls, _ := b.Leases(ctx, "web"); !ls[0].Expired() {
		t.Fatal("not expired after a full TTL unchanged")
	}
	la2, err := a.Renew(ctx, la)
	if err != nil {
		t.Fatal(err)
	}
	if ls, _ := b.Leases(ctx, "web"); ls[0].Expired() || ls[0].Token != la2.Token {
		t.Fatalf("after the renewal b sees %+v: a new token, unexpired", ls[0])
	}
	ca.Advance(ttl)
	if v := a.Validity(la2); v > 0 {
		t.Fatalf("validity a TTL after the renewal = %s, want none", v)
	}
}

// expiredNotRenewed: a holder whose last write is a TTL old may not renew,
// even on an untouched slot (observers may have recorded it failed); it
// takes the slot afresh, with a new token.
func expiredNotRenewed(t *testing.T, open Opener) {
	ctx := context.Background()
	ca := clock.NewFake(time.Time{})
	a := open("a", ca)
	l, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	ca.Advance(ttl + time.Second)
	if _, err := a.Renew(ctx, l); !errors.Is(err, fleetrepo.ErrLeaseLost) {
		t.Fatalf("renew of a lease expired on the holder's clock: %v, want ErrLeaseLost", err)
	}
	ls, err := open("b", clock.NewFake(time.Time{})).Leases(ctx, "web")
	if err != nil || len(ls) != 1 || ls[0].Token != l.Token {
		t.Fatalf("the refused renewal moved the slot: %+v, %v", ls, err)
	}
	l2, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil || l2.Token == l.Token || a.Validity(l2) <= 0 {
		t.Fatalf("acquire afresh = %+v, %v", l2, err)
	}
	if _, err := a.Renew(ctx, l2); err != nil {
		t.Fatalf("renew of the fresh lease: %v", err)
	}
}

// reports: what one handle writes, another reads back, by node.
func reports(t *testing.T, open Opener) {
	ctx := context.Background()
	a, b := open("a", clock.System{}), open("b", clock.System{})
	want := reconciler.NodeReport{Node: "a", Labels: map[string]string{"region": "eu"}, SpecCommit: "c0ffee",
		Time: time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC),
		Apps: map[string]reconciler.AppReport{"web": {Version: "1.0.0", State: reconciler.AppUpgrading, Target: "1.1.0"}}}
	if err := a.WriteReport(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteReport(ctx, reconciler.NodeReport{Node: "b", Time: want.Time}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Reports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := got["a"]
	if len(got) != 2 || r.Labels["region"] != "eu" || r.SpecCommit != "c0ffee" || !r.Time.Equal(want.Time) ||
		!reflect.DeepEqual(r.Apps["web"], want.Apps["web"]) || r.Stale {
		t.Fatalf("reports = %+v, want a's report as written and b's", got)
	}
	want.Apps = map[string]reconciler.AppReport{"web": {Version: "1.1.0", State: reconciler.AppHealthy}}
	if err := a.WriteReport(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Reports(ctx); got["a"].Apps["web"].Version != "1.1.0" {
		t.Fatalf("after a second report: %+v", got["a"])
	}
}

// typedErrors: names no store accepts fail before any I/O and are neither
// transient nor for a person; an unreachable store is transient.
func typedErrors(t *testing.T, f Factory) {
	ctx := context.Background()
	h := f.New(t)("a", clock.System{})
	if _, err := h.Acquire(ctx, "no/such app", 0, "a", "r1", ttl); err == nil || fleetrepo.IsTransient(err) || fleetrepo.NeedsPerson(err) {
		t.Fatalf("acquire with a bad app name: %v, want a plain error", err)
	}
	if _, err := h.Renew(ctx, reconciler.Lease{App: "web", Slot: 0, Holder: "a"}); err == nil || fleetrepo.IsTransient(err) {
		t.Fatalf("renew without a token: %v, want a plain error", err)
	}
	u := f.Unreachable(t)
	for name, call := range map[string]func() error{
		"acquire": func() error { _, err := u.Acquire(ctx, "web", 0, "a", "r1", ttl); return err },
		"record":  func() error { _, err := u.Record(ctx, "web"); return err },
		"append": func() error {
			return u.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
				return &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1"}, nil
			})
		},
		"reports": func() error { _, err := u.Reports(ctx); return err },
	} {
		err := call()
		if !fleetrepo.IsTransient(err) || errors.Is(err, fleetrepo.ErrConflict) {
			t.Errorf("%s on an unreachable store: %v, want a transient error", name, err)
		}
	}
}

// everyEventType: an event of every type the engine writes reads back as
// written (a type a store's reader does not know is skipped as garbage:
// node_held was, so a node held mid-rollout was recorded for ever).
func everyEventType(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open("a", clock.NewFake(time.Time{}))
	types := reconciler.EventTypes()
	for _, typ := range types {
		if err := s.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
			return &reconciler.Event{Type: typ, Rollout: "r1", By: "a", Node: "n1", Reason: typ}, nil
		}); err != nil {
			t.Fatalf("append %s: %v", typ, err)
		}
	}
	rec, err := open("b", clock.NewFake(time.Time{})).Record(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range rec {
		got = append(got, e.Type)
	}
	if !reflect.DeepEqual(got, types) {
		t.Fatalf("record read back = %v, want every type as written: %v", got, types)
	}
}
