package etcdstore_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/faultproxy"
	"github.com/fleetops/reconciler/reconciler"
)

// TestLateKeepAliveKeepsTheLease: when the answers to a node's liveness
// keep-alives come late (a loaded server: the client gives the keep-alive
// up after a TTL without an answer, though the server renewed the lease),
// the next report write keeps the same lease alive again instead of
// granting another; a lease that is really gone (revoked) is replaced.
func TestLateKeepAliveKeepsTheLease(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	p := proxied(t, c)
	const ttl = 2 * time.Second
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: []string{p.Addr()}, LivenessTTL: ttl, ReportRefresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw := rawClient(t, c)
	report := reconciler.NodeReport{Node: "n1", Apps: map[string]reconciler.AppReport{"web": {Version: "1.0.0"}}}
	lease := func() clientv3.LeaseID {
		t.Helper()
		resp, err := raw.Get(ctx, "/reconciler/alive/n1")
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("liveness key: %v, %v", resp, err)
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	leases := func() int {
		t.Helper()
		resp, err := raw.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Leases)
	}
	if err := st.WriteReport(ctx, report); err != nil {
		t.Fatal(err)
	}
	first := lease()

	// Answers held back for longer than the TTL; the keep-alives still
	// reach the server, which renews the lease.
	p.Set(faultproxy.Fault{Stall: true, Dir: faultproxy.Down})
	time.Sleep(ttl + 1500*time.Millisecond)
	p.Heal()
	if err := st.WriteReport(ctx, report); err != nil { // unchanged, but written: the keep-alive had stopped
		t.Fatal(err)
	}
	if got, n := lease(), leases(); got != first || n != 1 {
		t.Fatalf("after a late keep-alive the liveness key is on lease %x of %d: want the same lease %x, the only one", got, n, first)
	}
	time.Sleep(2 * ttl)
	if ttlResp, err := raw.TimeToLive(ctx, first); err != nil || ttlResp.TTL < 0 { // -1: expired; 0: under a second left
		t.Fatalf("lease %x two TTLs later: %+v, %v: want it kept alive again", first, ttlResp, err)
	}

	if _, err := raw.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the keep-alive learns the lease is gone
	report = reconciler.NodeReport{Node: "n1", Apps: map[string]reconciler.AppReport{"web": {Version: "1.0.1"}}}
	if err := st.WriteReport(ctx, report); err != nil {
		t.Fatal(err)
	}
	if got := lease(); got == first || got == 0 {
		t.Fatalf("after its lease was revoked the liveness key is on lease %x: want a new one", got)
	}
}

// TestLeaseWritesDoNotWaitForTheRecord: a holder renews its lease and
// writes its report while the same Store is inside a record operation (an
// append whose decide is held here, as a record read of many pages on a
// loaded cluster holds it for seconds). With one mutex for both, the
// holders of a 10,000-node run queued their renewals behind their own
// reads of the record until their leases expired (docs/scale.md).
func TestLeaseWritesDoNotWaitForTheRecord(t *testing.T) {
	c := cluster(t, 1)
	st := open(t, c, "n1", etcdstore.Options{})
	ctx := context.Background()
	l, err := st.Acquire(ctx, "web", 0, "n1", "r1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	inDecide, release := make(chan struct{}), make(chan struct{})
	appended := make(chan error, 1)
	go func() {
		appended <- st.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
			close(inDecide)
			<-release
			return &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", Waves: [][]string{{"n1"}}}, nil
		})
	}()
	<-inDecide
	done := make(chan error, 1)
	go func() {
		if _, err := st.Renew(ctx, l); err != nil {
			done <- err
			return
		}
		done <- st.WriteReport(ctx, reconciler.NodeReport{Node: "n1", Time: time.Now()})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("renew and report during a record operation: %v", err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		<-appended
		t.Fatal("the renewal and the report write waited for the record operation")
	}
	close(release)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
}
