package etcdstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// TestBadKeysSkippedAndNamed: garbage written by hand under the prefix (a
// report, a lease, a record event) is skipped by every read and named by
// BadRefs; the rest reads as usual, Acquire of the garbage slot says
// ErrBadLease, Break overwrites it, and appends go on after a bad event.
func TestBadKeysSkippedAndNamed(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	raw := rawClient(t, c)
	st := open(t, c, "op", etcdstore.Options{})
	if err := st.WriteReport(ctx, reconciler.NodeReport{Node: "good"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
		return &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", Target: "1.1.0"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for key, val := range map[string]string{
		"/reconciler/nodes/junk":                "not json",
		"/reconciler/leases/web/0":              "\x00",
		"/reconciler/rollouts/web/0000000002":   `{"foo": 1}`,
		"/reconciler/rollouts/web/not-a-number": `{"type": "started", "rollout": "r9"}`,
	} {
		if _, err := raw.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	reps, err := st.Reports(ctx)
	if err != nil || len(reps) != 1 || reps["good"].Node != "good" {
		t.Fatalf("reports = %v, %v: want the good one only", reps, err)
	}
	if ls, err := st.Leases(ctx, "web"); err != nil || len(ls) != 0 {
		t.Fatalf("leases = %+v, %v: want the garbage slot skipped", ls, err)
	}
	if _, err := st.Acquire(ctx, "web", 0, "a", "r1", time.Minute); !errors.Is(err, fleetrepo.ErrBadLease) {
		t.Fatalf("acquire of a garbage slot: %v, want ErrBadLease", err)
	}
	if err := st.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
		if len(cur) != 1 {
			t.Errorf("decide sees %d events, want the one good one", len(cur))
		}
		return &reconciler.Event{Type: reconciler.EventCompleted, Rollout: "r1"}, nil
	}); err != nil {
		t.Fatalf("append after a bad event: %v", err)
	}
	rec, err := open(t, c, "reader", etcdstore.Options{}).Record(ctx, "web")
	if err != nil || len(rec) != 2 || rec[1].Type != reconciler.EventCompleted {
		t.Fatalf("record = %+v, %v: want started, completed", rec, err)
	}
	var named []string
	for _, b := range st.BadRefs() {
		named = append(named, b.Ref)
	}
	want := "/reconciler/leases/web/0 /reconciler/nodes/junk /reconciler/rollouts/web/0000000002"
	if strings.Join(named, " ") != want {
		t.Fatalf("BadRefs = %v, want %s", named, want)
	}
	if _, err := st.Break(ctx, "web", 0); err != nil {
		t.Fatalf("break over garbage: %v", err)
	}
	if _, err := st.Acquire(ctx, "web", 0, "a", "r1", time.Minute); err != nil {
		t.Fatalf("acquire after the break: %v", err)
	}
	for _, b := range st.BadRefs() {
		if b.Ref == "/reconciler/leases/web/0" {
			t.Fatal("the overwritten lease is still named bad")
		}
	}
}
