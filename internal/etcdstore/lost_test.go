package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/internal/faultproxy"
)

// proxied is a fault proxy in front of c's first member, closed with the
// test.
func proxied(t *testing.T, c *embedded.Cluster) *faultproxy.Proxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := faultproxy.New(ctx, "127.0.0.1:0", c.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestLostRenewalAnswer: a renewal lands but its answer is lost (the proxy
// drops what etcd sends back). The call fails as transient; the holder's
// next renewal finds its own write on the slot and adopts it, even when
// its last answered write is older than the TTL, because the lost one was
// sent within it. Once that one is a TTL old too, the lease is lost.
func TestLostRenewalAnswer(t *testing.T) {
	ctx := context.Background()
	p := proxied(t, cluster(t, 1))
	clk := clock.NewFake(time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC))
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: []string{p.Addr()}, Clock: clk, OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = time.Minute
	l, err := st.Acquire(ctx, "web", 0, "a", "r1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second)
	p.Set(faultproxy.Fault{Drop: true, Dir: faultproxy.Down})
	if _, err := st.Renew(ctx, l); !fleetrepo.IsTransient(err) {
		t.Fatalf("renewal with its answer lost: %v, want a transient error", err)
	}
	p.Heal()
	clk.Advance(20 * time.Second) // the answered write is 70s old, the lost one 20s
	l2, err := st.Renew(ctx, l)
	if err != nil {
		t.Fatalf("renewal after a lost answer within the TTL: %v, want it adopted", err)
	}
	if l2.Token == l.Token || st.Validity(l2) != ttl {
		t.Fatalf("renewed lease %+v, validity %s", l2, st.Validity(l2))
	}
	// The same with no renewal landing within the TTL: lost.
	clk.Advance(50 * time.Second)
	p.Set(faultproxy.Fault{Drop: true, Dir: faultproxy.Down})
	if _, err := st.Renew(ctx, l2); !fleetrepo.IsTransient(err) {
		t.Fatalf("second renewal with its answer lost: %v", err)
	}
	p.Heal()
	clk.Advance(61 * time.Second) // the lost write is now a TTL old too
	if _, err := st.Renew(ctx, l2); !errors.Is(err, fleetrepo.ErrLeaseLost) {
		t.Fatalf("renewal a TTL after the last write landed: %v, want ErrLeaseLost", err)
	}
}
