package fleetrepo

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// Figures, not pass/fail: go test -run '^$' -bench . ./fleetrepo

func benchTransports(b *testing.B, fn func(b *testing.B, url string)) {
	b.Run("file", func(b *testing.B) { fn(b, gittest.NewBare(b, nil)) })
	b.Run("http", func(b *testing.B) { fn(b, gittest.Serve(b, gittest.NewBare(b, nil))) })
}

// BenchmarkPollUnchanged is one Fetch of a branch that did not move: a ref listing.
func BenchmarkPollUnchanged(b *testing.B) {
	benchTransports(b, func(b *testing.B, url string) {
		d, err := OpenDesired(b.Context(), DesiredOptions{URL: url})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Fetch(b.Context()); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := d.Fetch(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLeaseRenew is one compare-and-swap round trip (Renew: build a
// commit, push it naming the expected old value).
func BenchmarkLeaseRenew(b *testing.B) {
	benchTransports(b, func(b *testing.B, url string) {
		sh, err := OpenShared(b.Context(), SharedOptions{URL: url})
		if err != nil {
			b.Fatal(err)
		}
		l, err := sh.Acquire(b.Context(), "web", 0, "n1", "r1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if l, err = sh.Renew(b.Context(), l); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLeases is one read of an app's lease set whose one lease moved.
func BenchmarkLeasesAfterChange(b *testing.B) {
	benchTransports(b, func(b *testing.B, url string) {
		w, _ := OpenShared(b.Context(), SharedOptions{URL: url})
		r, _ := OpenShared(b.Context(), SharedOptions{URL: url})
		l, err := w.Acquire(b.Context(), "web", 0, "n1", "r1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			b.StopTimer()
			if l, err = w.Renew(b.Context(), l); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := r.Leases(b.Context(), "web"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
