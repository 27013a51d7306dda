package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// Contention: clients (each its own handle, on the system clock) compete
// for 3 slots of one app for rounds; some crash while holding (their lease
// must be taken over once it expired on the others' clocks) and later try
// to renew it (which must fail). Then every client's belief is checked (at
// no instant more than 3 believe they hold, never two on one slot), and
// every token a client was told it won must be in its slot's history.
// One run for every store (TestGitContention, TestEtcdContention, TestMemoryContention).
func Contention(t *testing.T, open Opener, clients, rounds int) {
	ttl := 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &contention{tokens: map[string]bool{}, ops: map[string][]time.Duration{}, stopBy: time.Now().Add(60 * time.Second)}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		sh := open(fmt.Sprintf("c%d", i), clock.System{})
		wg.Go(func() { c.client(ctx, t, sh, i, rounds, ttl) })
	}
	wg.Wait()
	t.Logf("%d clients × %d rounds, %d holdings, %d crashes, %d stale renewals refused, in %s",
		clients, rounds, len(c.holdings), c.crashes, c.stale, time.Since(start).Round(time.Millisecond))
	c.logOps(t)
	c.checkBeliefs(t, 3)
	takeovers := c.checkHistory(ctx, t, open("auditor", clock.System{}))
	if takeovers == 0 || c.stale == 0 {
		t.Errorf("%d takeovers and %d refused stale renewals; want some of each", takeovers, c.stale)
	}
}

// checkHistory reads every slot's history: every token a client was told
// it won must be in it (no lost update). It returns the takeovers seen (a
// holder followed by another holder).
func (c *contention) checkHistory(ctx context.Context, t *testing.T, sh Store) int {
	t.Helper()
	seen := map[string]bool{}
	takeovers, writes := 0, 0
	for slot := range 3 {
		hist, err := sh.LeaseHistory(ctx, "web", slot, 0)
		if err != nil {
			t.Fatalf("history of web/%d: %v", slot, err)
		}
		writes += len(hist)
		for i, h := range hist { // newest first
			seen[h.Token] = true
			if i+1 < len(hist) && h.Holder != "" && hist[i+1].Holder != "" && hist[i+1].Holder != h.Holder {
				takeovers++
			}
		}
	}
	for tok := range c.tokens {
		if !seen[tok] {
			t.Errorf("token %s was won by a client but is in no lease history: a lost update", tok)
		}
	}
	t.Logf("lease history: %d writes, %d takeovers", writes, takeovers)
	return takeovers
}

// holding is one interval during which a client believed it held a slot:
// from the return of a successful Acquire or Renew to the earlier of its
// Release call and the end of the lease's validity on its own clock.
type holding struct {
	client     int
	slot       int
	from, till time.Time
	token      string
}

// contention is the shared log of a contention run.
type contention struct {
	mu       sync.Mutex
	holdings []holding
	tokens   map[string]bool // every token a client got from a successful write
	stale    int             // renewals of a taken-over lease that failed
	crashes  int
	ops      map[string][]time.Duration
	stopBy   time.Time // no new rounds after this: a loaded machine ends early
}

// timed runs op and records its duration under name.
func (c *contention) timed(name string, op func()) {
	start := time.Now()
	op()
	d := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops[name] = append(c.ops[name], d)
}

func (c *contention) logOps(t *testing.T) {
	for name, ds := range c.ops {
		slices.Sort(ds)
		t.Logf("%-8s n=%4d median %6s p99 %6s", name, len(ds),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*99/100].Round(time.Millisecond))
	}
}

func (c *contention) hold(client int, l reconciler.Lease, from, till time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holdings = append(c.holdings, holding{client: client, slot: l.Slot, from: from, till: till, token: l.Token})
	c.tokens[l.Token] = true
}

// work stands for what a client does while it holds a lease.
func work(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// client runs rounds of acquire, (sometimes crash), renew, release.
func (c *contention) client(ctx context.Context, t *testing.T, sh Store, id, rounds int, ttl time.Duration) {
	var stale []reconciler.Lease
	for round := 0; round < rounds && ctx.Err() == nil && time.Now().Before(c.stopBy); round++ {
		l, ok := c.acquireAny(ctx, t, sh, id, ttl)
		if !ok {
			return
		}
		if id%5 == 0 && round%3 == 1 { // crash while holding: never renew nor release
			c.endHold(id, l, time.Now()) // the incarnation that believed is gone
			c.mu.Lock()
			c.crashes++
			c.mu.Unlock()
			stale = append(stale, l)
			// A restart takes a while: long enough for the others to see
			// the lease expire and take it over (on a fast store the same
			// client would otherwise win its own slot back at once).
			work(ctx, 2*ttl)
			continue
		}
		work(ctx, 20*time.Millisecond) // the upgrade under the lease
		if l, ok = c.renew(ctx, t, sh, id, l); ok {
			work(ctx, 10*time.Millisecond)
			c.release(ctx, t, sh, id, l)
		}
	}
	for _, l := range stale { // back from the dead: renewals must fail
		if l2, err := sh.Renew(ctx, l); errors.Is(err, fleetrepo.ErrLeaseLost) {
			c.mu.Lock()
			c.stale++
			c.mu.Unlock()
		} else if err == nil {
			c.hold(id, l2, time.Now(), time.Now())
			c.release(ctx, t, sh, id, l2)
		} else {
			t.Errorf("client %d: stale Renew: %v", id, err)
		}
	}
}

// acquireAny tries a random slot until one is won, backing off between
// attempts as a real agent would. Acquire reads the slot itself, and each
// read lets this client observe how long a lease has been unchanged.
func (c *contention) acquireAny(ctx context.Context, t *testing.T, sh Store, id int, ttl time.Duration) (reconciler.Lease, bool) {
	for ctx.Err() == nil {
		var l reconciler.Lease
		var err error
		c.timed("acquire", func() { l, err = sh.Acquire(ctx, "web", rand.IntN(3), fmt.Sprintf("c%d", id), "r1", ttl) })
		if err == nil {
			now := time.Now()
			c.hold(id, l, now, now.Add(sh.Validity(l)))
			return l, true
		}
		if !errors.Is(err, fleetrepo.ErrLeaseHeld) && !errors.Is(err, fleetrepo.ErrConflict) {
			t.Errorf("client %d: Acquire: %v", id, err)
			return reconciler.Lease{}, false
		}
		work(ctx, time.Duration(50+rand.IntN(150))*time.Millisecond)
	}
	return reconciler.Lease{}, false
}

func (c *contention) renew(ctx context.Context, t *testing.T, sh Store, id int, l reconciler.Lease) (reconciler.Lease, bool) {
	c.endHold(id, l, time.Now())
	var l2 reconciler.Lease
	var err error
	c.timed("renew", func() { l2, err = sh.Renew(ctx, l) })
	if errors.Is(err, fleetrepo.ErrLeaseLost) {
		return l, false // validity ran out under load and someone took it: fine
	}
	if err != nil {
		t.Errorf("client %d: Renew: %v", id, err)
		return l, false
	}
	now := time.Now()
	c.hold(id, l2, now, now.Add(sh.Validity(l2)))
	return l2, true
}

func (c *contention) release(ctx context.Context, t *testing.T, sh Store, id int, l reconciler.Lease) {
	c.endHold(id, l, time.Now())
	var err error
	c.timed("release", func() { err = sh.Release(ctx, l) })
	if err != nil && !errors.Is(err, fleetrepo.ErrLeaseLost) {
		t.Errorf("client %d: Release: %v", id, err)
	}
}

// endHold ends the client's belief in l at t (if its validity had not already).
func (c *contention) endHold(client int, l reconciler.Lease, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.holdings) - 1; i >= 0; i-- {
		h := &c.holdings[i]
		if h.client == client && h.token == l.Token {
			if at.Before(h.till) {
				h.till = at
			}
			return
		}
	}
}

// checkBeliefs sweeps the intervals: never more than max believers, never
// two on one slot.
func (c *contention) checkBeliefs(t *testing.T, limit int) {
	type edge struct {
		at    time.Time
		delta int
		h     holding
	}
	var edges []edge
	for _, h := range c.holdings {
		if h.till.After(h.from) {
			edges = append(edges, edge{h.from, +1, h}, edge{h.till, -1, h})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { // ends before starts at the same instant
		return cmp.Or(a.at.Compare(b.at), a.delta-b.delta)
	})
	bySlot, total, peak := map[int]int{}, 0, 0
	for _, e := range edges {
		total += e.delta
		bySlot[e.h.slot] += e.delta
		peak = max(peak, total)
		if total > limit || bySlot[e.h.slot] > 1 {
			t.Fatalf("at %s %d clients believed they held a lease, %d on slot %d (client %d)",
				e.at.Format(time.StampMicro), total, bySlot[e.h.slot], e.h.slot, e.h.client)
		}
	}
	t.Logf("peak concurrent holders: %d", peak)
}
