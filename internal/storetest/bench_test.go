package storetest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/internal/storetest"
	"github.com/fleetops/reconciler/reconciler"
)

// BenchmarkStores: one Acquire, one Append, one AppendGuarded (3 slots) of each store (figures in
// docs/shared-state.md): go test -run '^$' -bench . ./internal/storetest
func BenchmarkStores(b *testing.B) {
	for _, s := range []struct {
		name string
		open func(b *testing.B) storetest.Store
	}{
		{"bare", func(b *testing.B) storetest.Store { return gitOpenerB(b, gittest.NewBare(b, nil)) }},
		{"http-backend", func(b *testing.B) storetest.Store { return gitOpenerB(b, gittest.Serve(b, gittest.NewBare(b, nil))) }},
		{"etcd", func(b *testing.B) storetest.Store {
			return etcdOpener(b, embedded.New(b, 1).Endpoints(), "/bench/", 0, nil)("a", clock.System{})
		}},
	} {
		b.Run(s.name+"/Acquire", func(b *testing.B) {
			st := s.open(b)
			ctx := context.Background()
			for i := range b.N {
				if _, err := st.Acquire(ctx, "web", i, "a", "r1", time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/Append", func(b *testing.B) {
			st := s.open(b)
			ctx := context.Background()
			for i := range b.N {
				err := st.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
					return &reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: fmt.Sprint(i)}, nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/AppendGuarded", func(b *testing.B) {
			// An append guarded by 3 held lease slots: the verdict's
			// write (docs/shared-state.md, "Verdicts guarded by the leases").
			st := s.open(b)
			ctx := context.Background()
			var guard []reconciler.Lease
			for slot := range 3 {
				l, err := st.Acquire(ctx, "web", slot, "a", "r1", time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				guard = append(guard, l)
			}
			b.ResetTimer()
			for i := range b.N {
				err := st.AppendGuarded(ctx, "web", guard, func([]reconciler.Event) (*reconciler.Event, error) {
					return &reconciler.Event{Type: reconciler.EventNodeUnreachable, Rollout: "r1", Node: fmt.Sprint(i)}, nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func gitOpenerB(b *testing.B, url string) storetest.Store {
	return gitOpener(b, url)("a", clock.System{})
}
