package storetest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/reconciler"
)

// TestEtcdLeaderKill runs acquires, renewals, releases and appends against a
// three-member cluster and kills the leader in the middle: every operation
// that was acknowledged is still there afterwards (each append in the
// record, in order; each lease write in the slot's history), the client
// carries on through the two survivors, and a failed call during the
// election is transient, never a conflict it did not cause.
func TestEtcdLeaderKill(t *testing.T) {
	servers(t)
	cluster := embedded.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(node string) *etcdstore.Store {
		st, err := etcdstore.Open(etcdstore.Options{Endpoints: cluster.Endpoints(), Identity: node, OpTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st := open("n1")
	// retry calls op until it succeeds, allowing only transient errors
	// (the election), and counts them.
	transient := 0
	retry := func(what string, op func() error) {
		t.Helper()
		for {
			err := op()
			if err == nil {
				return
			}
			if !fleetrepo.IsTransient(err) {
				t.Fatalf("%s: %v (want success or a transient error)", what, err)
			}
			transient++
			if ctx.Err() != nil {
				t.Fatalf("%s: still failing at the deadline: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var acked []string  // reasons of acknowledged appends, in order
	var tokens []string // acknowledged lease tokens of web/0
	const steps = 40
	killedAt := -1
	for i := range steps {
		if i == steps/2 {
			leader := cluster.Leader()
			if leader == nil {
				t.Fatal("no leader before the kill")
			}
			leader.Kill()
			killedAt = i
			t.Logf("killed leader %s at step %d", leader.Name, i)
		}
		reason := fmt.Sprintf("step %d", i)
		retry("append "+reason, func() error {
			return st.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
				// A write whose answer was lost may have landed: do not append it twice.
				if len(cur) > 0 && cur[len(cur)-1].Reason == reason {
					return nil, nil
				}
				return &reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", By: "n1", Node: "n1", Reason: reason}, nil
			})
		})
		acked = append(acked, reason)
		var l reconciler.Lease
		retry("acquire", func() error {
			var err error
			l, err = st.Acquire(ctx, "web", 0, "n1", "r1", time.Minute)
			return err
		})
		tokens = append(tokens, l.Token)
		retry("renew", func() error {
			var err error
			l, err = st.Renew(ctx, l)
			return err
		})
		tokens = append(tokens, l.Token)
		retry("release", func() error { return st.Release(ctx, l) })
	}
	if killedAt < 0 {
		t.Fatal("the leader was never killed")
	}
	if cluster.Leader() == nil {
		t.Fatal("no leader after the kill")
	}
	// A fresh client reads everything that was acknowledged.
	fresh := open("reader")
	rec, err := fresh.Record(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != len(acked) {
		t.Fatalf("record has %d events, %d were acknowledged", len(rec), len(acked))
	}
	for i, e := range rec {
		if e.Reason != acked[i] {
			t.Fatalf("event %d is %q, want %q", i, e.Reason, acked[i])
		}
	}
	hist, err := fresh.LeaseHistory(ctx, "web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	inHistory := map[string]bool{}
	for _, h := range hist {
		inHistory[h.Token] = true
	}
	for _, tok := range tokens {
		if !inHistory[tok] {
			t.Fatalf("acknowledged lease token %s is not in the slot's history", tok)
		}
	}
	ls, err := fresh.Leases(ctx, "web")
	if err != nil || len(ls) != 1 || ls[0].Held() {
		t.Fatalf("leases at the end = %+v, %v: want web/0 free (released)", ls, err)
	}
	t.Logf("%d steps, %d transient errors during the election, %d lease writes in history", steps, transient, len(hist))
}
