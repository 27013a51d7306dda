package rollout

import (
	"context"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// TestWaitingNodeReadsOnceAPoll (issue 13 §2): a node waiting for its wave
// in a rollout in progress costs the Git server one request per look at the
// shared state (every ActivePoll, 2 s) while nothing moved, and three when
// the app's leases or record moved (the listing, and one fetch of both).
// Before, every look listed the refs three times (node reports, record,
// leases), and fetched each that moved on its own.
func TestWaitingNodeReadsOnceAPoll(t *testing.T) {
	ctx := context.Background()
	url, reqs := gittest.ServeCounted(t, gittest.NewBare(t, nil))
	a, b := newNode(t, url, "a", nil), newNode(t, url, "b", nil)
	in := input(app(true), "a", "b")
	pa, err := a.coord.Permit(ctx, in)
	if err != nil || pa.Lease == nil {
		t.Fatalf("a: %+v, %v; want an upgrade under a lease", pa, err)
	}
	defer pa.Lease.Finish(ctx, reconciler.AppReport{Version: "1.0.0", State: reconciler.AppHealthy}, nil)
	if pb, err := b.coord.Permit(ctx, in); err != nil || pb.Waiting == "" {
		t.Fatalf("b: %+v, %v; want it waiting for wave 2", pb, err)
	}

	before := reqs.Counts()
	const looks = 10
	for range looks {
		b.clock.advance(2 * time.Second)
		if pb, err := b.coord.Permit(ctx, in); err != nil || pb.Waiting == "" {
			t.Fatalf("b: %+v, %v; want it waiting", pb, err)
		}
	}
	idle := reqs.Counts().Sub(before)
	t.Logf("waiting node, nothing moved: %s in %d looks", idle, looks)
	if idle.Total() > looks {
		t.Fatalf("waiting node, nothing moved: %s in %d looks; want one each", idle, looks)
	}

	// The holder renews its lease: the next look fetches it, once.
	a.clock.advance(time.Second)
	if _, err := a.shared.Renew(ctx, leaseOf(t, a, "a")); err != nil {
		t.Fatal(err)
	}
	before = reqs.Counts()
	if pb, err := b.coord.Permit(ctx, in); err != nil || pb.Waiting == "" {
		t.Fatalf("b: %+v, %v; want it waiting", pb, err)
	}
	moved := reqs.Counts().Sub(before)
	t.Logf("waiting node, a lease renewed: %s", moved)
	if moved.Total() > 2 || moved.Fetches != 1 {
		t.Fatalf("waiting node after a renewal: %s; want a listing and one fetch", moved)
	}
}

// leaseOf is the lease holder holds, as n reads it.
func leaseOf(t *testing.T, n *node, holder string) reconciler.Lease {
	t.Helper()
	leases, err := n.shared.Leases(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Holder == holder {
			return l
		}
	}
	t.Fatalf("no lease held by %s", holder)
	return reconciler.Lease{}
}
