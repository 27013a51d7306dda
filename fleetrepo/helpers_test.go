package fleetrepo

import (
	"context"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
)

// transports runs fn once against a local bare repository (go-git's file
// transport, which runs git-receive-pack) and once against the same kind of
// repository served by git http-backend over loopback.
func transports(t *testing.T, files map[string]string, fn func(t *testing.T, url, bare string)) {
	t.Run("file", func(t *testing.T) {
		bare := gittest.NewBare(t, files)
		fn(t, bare, bare)
	})
	t.Run("http", func(t *testing.T) {
		bare := gittest.NewBare(t, files)
		fn(t, gittest.Serve(t, bare), bare)
	})
}

// newFakeClock is the tests' clock: it moves only when told (Advance).
func newFakeClock() *clock.Fake {
	return clock.NewFake(time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC))
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openShared(t *testing.T, url, who string, clock Clock) *Shared {
	t.Helper()
	sh, err := OpenShared(testContext(t), SharedOptions{URL: url, Identity: Identity{Name: who}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func openDesired(t *testing.T, url string) *Desired {
	t.Helper()
	d, err := OpenDesired(testContext(t), DesiredOptions{URL: url, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
