package fleetrepo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

func TestLeaseLifecycle(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		a, b := openShared(t, url, "a", nil), openShared(t, url, "b", nil)
		l, err := a.Acquire(ctx, "web", 0, "a", "r1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if l.Token != gittest.RevParse(t, bare, LeasePrefix+"web/0") || l.Holder != "a" || a.Validity(l) <= 0 {
			t.Fatalf("acquired lease %+v does not match the ref", l)
		}
		held, err := b.Acquire(ctx, "web", 0, "b", "r1", time.Minute)
		if !errors.Is(err, ErrLeaseHeld) || held.Holder != "a" {
			t.Fatalf("second Acquire = %+v, %v; want ErrLeaseHeld naming a", held, err)
		}
		if v := b.Validity(held); v > 0 {
			t.Fatalf("validity of a lease b did not write = %s, want none", v)
		}
		l2, err := a.Renew(ctx, l)
		if err != nil || l2.Token == l.Token {
			t.Fatalf("Renew = %+v, %v", l2, err)
		}
		// A renewal whose answer was lost (a renews from l again): a
		// recognises its own commit l2 and renews on top of it.
		l3, err := a.Renew(ctx, l)
		if err != nil || l3.Token == l2.Token || a.Validity(l3) <= 0 {
			t.Fatalf("Renew with the token before a lost answer = %+v, %v; want adopted and renewed", l3, err)
		}
		if err := a.Release(ctx, l3); err != nil {
			t.Fatal(err)
		}
		lb, err := b.Acquire(ctx, "web", 0, "b", "r1", time.Minute)
		if err != nil {
			t.Fatalf("Acquire after release: %v", err)
		}
		before, err := openShared(t, url, "operator", nil).Break(ctx, "web", 0)
		if err != nil || before.Holder != "b" {
			t.Fatalf("Break = %+v, %v", before, err)
		}
		if _, err := b.Renew(ctx, lb); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Renew after Break = %v, want ErrLeaseLost", err)
		}
		leases, err := b.Leases(ctx, "")
		if err != nil || len(leases) != 1 || leases[0].Held() {
			t.Fatalf("Leases = %+v, %v; want one free slot", leases, err)
		}
		hist, err := b.LeaseHistory(ctx, "web", 0, 0)
		var holders []string
		for _, h := range hist {
			holders = append(holders, h.Holder)
		}
		// broken, b acquired, a released, a renewed twice, a acquired
		if err != nil || strings.Join(holders, ",") != ",b,,a,a,a" || hist[1].Token != lb.Token {
			t.Fatalf("LeaseHistory = %v (%+v), %v", holders, hist, err)
		}
	})
}

// An expired lease is taken over, measured only on the observer's clock;
// the stale holder's renewal then fails.
func TestLeaseTakeoverOnObserverClock(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	ctx := testContext(t)
	clockA, clockB := newFakeClock(), newFakeClock()
	a, b := openShared(t, bare, "a", clockA), openShared(t, bare, "b", clockB)
	const ttl = 30 * time.Second
	held, err := a.Acquire(ctx, "web", 1, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	// b first sees the lease now; a's clock racing ahead changes nothing for b.
	clockA.Advance(time.Hour)
	if _, err := b.Acquire(ctx, "web", 1, "b", "r1", ttl); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("Acquire of a fresh lease = %v, want ErrLeaseHeld", err)
	}
	clockB.Advance(ttl - time.Second)
	if _, err := b.Acquire(ctx, "web", 1, "b", "r1", ttl); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("Acquire before TTL = %v, want ErrLeaseHeld", err)
	}
	leases, err := b.Leases(ctx, "web")
	if err != nil || len(leases) != 1 || leases[0].Unchanged != ttl-time.Second || leases[0].Expired() {
		t.Fatalf("Leases = %+v, %v; want unchanged for TTL-1s, not expired", leases, err)
	}
	clockB.Advance(time.Second)
	taken, err := b.Acquire(ctx, "web", 1, "b", "r1", ttl)
	if err != nil {
		t.Fatalf("takeover of an expired lease: %v", err)
	}
	if taken.Holder != "b" || a.Validity(held) > 0 {
		t.Fatalf("takeover = %+v; a's validity %s", taken, a.Validity(held))
	}
	if _, err := a.Renew(ctx, held); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale holder's Renew = %v, want ErrLeaseLost", err)
	}
	msg := gittest.Git(t, bare, "log", "-1", "--format=%s", LeasePrefix+"web/1")
	if msg != "lease web/1: taken over by b from a (unchanged for 30s)" {
		t.Errorf("takeover commit message = %q", msg)
	}
}

// A push the server refuses for another reason than a race (here a hook)
// is not worth retrying, and says so.
func TestRejectedPushIsNotTransient(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		hook := filepath.Join(bare, "hooks", "pre-receive")
		if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'protected by policy' >&2\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := openShared(t, url, "a", nil).Acquire(testContext(t), "web", 0, "a", "r1", time.Minute)
		if !errors.Is(err, ErrRejected) || IsTransient(err) || !NeedsPerson(err) || errors.Is(err, ErrConflict) {
			t.Fatalf("Acquire against a refusing hook = %v; want ErrRejected, not transient", err)
		}
		t.Log(err)
	})
}

func TestMissingRepositoryIsNotTransient(t *testing.T) {
	_, err := openShared(t, filepath.Join(t.TempDir(), "nowhere.git"), "a", nil).Leases(testContext(t), "web")
	if err == nil || IsTransient(err) || !NeedsPerson(err) || !strings.Contains(err.Error(), "nowhere.git") {
		t.Fatalf("Leases of a missing repository = %v; want a permanent error naming it", err)
	}
}

// A lease whose validity ran out on its holder's clock is not renewed, even
// when no one took the slot: observers may have expired it and recorded the
// holder failed, and a late renewal would revive it behind their backs (a
// holder stopped past its TTL). It can be released, or taken afresh.
func TestExpiredLeaseIsNotRenewed(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		clk := newFakeClock()
		a := openShared(t, url, "a", clk)
		l, err := a.Acquire(ctx, "web", 0, "a", "r1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute + time.Second)
		if _, err := a.Renew(ctx, l); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Renew of a lease expired on the holder's clock = %v, want ErrLeaseLost", err)
		}
		if got := gittest.RevParse(t, bare, LeasePrefix+"web/0"); got != l.Token {
			t.Fatalf("the refused renewal moved the slot: %s, want %s", got, l.Token)
		}
		l2, err := a.Acquire(ctx, "web", 0, "a", "r1", time.Minute)
		if err != nil || l2.Token == l.Token || a.Validity(l2) <= 0 {
			t.Fatalf("Acquire afresh = %+v, %v", l2, err)
		}
		if _, err := a.Renew(ctx, l2); err != nil {
			t.Fatalf("Renew of the fresh lease: %v", err)
		}
	})
}
