package etcdstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// TestAppendCommutingLandsPastWhatItDidNotSee: an event decided on a
// record another writer then appended to lands after that writer's event
// without a second decide; a hundred writers appending at once each land
// exactly once, in a record with no gap, deciding at most twice each (Append
// decides again at every loss: up to a hundred times).
func TestAppendCommutingLandsPastWhatItDidNotSee(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	d := etcdstore.NewDecoded()
	a, b := open(t, c, "a", etcdstore.Options{Decoded: d}), open(t, c, "b", etcdstore.Options{})
	appendEvent := func(st *etcdstore.Store, e reconciler.Event) {
		t.Helper()
		if err := st.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }); err != nil {
			t.Fatal(err)
		}
	}
	appendEvent(a, reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", Target: "1.1.0"})
	decided := 0
	err := a.AppendCommuting(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
		if decided++; decided == 1 {
			appendEvent(b, reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: "n2"})
		}
		return &reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: "n1"}, nil
	})
	if err != nil || decided != 1 {
		t.Fatalf("append: %v after %d decides, want landed after one", err, decided)
	}
	for _, st := range []*etcdstore.Store{a, b} {
		evs, err := st.Record(ctx, "web")
		if err != nil || len(evs) != 3 || evs[1].Node != "n2" || evs[2].Node != "n1" {
			t.Fatalf("record = %+v, %v: want started, n2's node_done, then n1's", evs, err)
		}
	}

	// Every writer decides on the same record before any appends (first
	// decide waits for all), as a wave's nodes finishing at once do.
	const writers = 100
	var wg, firsts sync.WaitGroup
	firsts.Add(writers)
	decides := make([]int, writers)
	errs := make([]error, writers)
	for i := range writers {
		st := open(t, c, fmt.Sprint("w", i), etcdstore.Options{Decoded: d})
		if _, err := st.Record(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.AppendCommuting(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
				if decides[i]++; decides[i] == 1 {
					firsts.Done()
					firsts.Wait()
				}
				return &reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: fmt.Sprint("w", i)}, nil
			})
		}()
	}
	wg.Wait()
	total := 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		total += decides[i]
	}
	fresh := open(t, c, "fresh", etcdstore.Options{})
	evs, err := fresh.Record(ctx, "web")
	if err != nil || len(evs) != 3+writers {
		t.Fatalf("record holds %d events, %v: want %d", len(evs), err, 3+writers)
	}
	seen := map[string]bool{}
	for _, e := range evs[3:] {
		if seen[e.Node] {
			t.Fatalf("%s recorded twice", e.Node)
		}
		seen[e.Node] = true
	}
	if total > 2*writers { // 64 land at the first try, the rest at the second
		t.Fatalf("%d decides for %d writers: want at most 2 each", total, writers)
	}
	t.Logf("%d writers decided %d times in all", writers, total)
}
