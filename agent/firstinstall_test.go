package agent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// TestFailedFirstInstallRetriesWithBackoff (issue 13 §2): a first install
// that fails (nothing ran before, so nothing serves) is tried again after
// 30 s, then 60 s, doubling up to 10 minutes, instead of waiting for a
// person for ever; the report (status) says when. A failed upgrade, with a
// previous version serving, is still not retried (TestFailedVersionIsNotRetried).
func TestFailedFirstInstallRetriesWithBackoff(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: repo})
	must(t, err)
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	drv := &fakeDriver{fail: map[string]bool{"1.0.0": true}}
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
		Drivers: map[string]driver.Driver{"process": drv}, Clock: clk})
	must(t, err)
	pass := func() reconciler.AppReport {
		t.Helper()
		a.Reconcile(ctx)
		return a.last.Load().Apps["web"]
	}
	attempts := func() int { return len(drv.ran()) }

	rep := pass()
	if rep.State != reconciler.AppFailed || !rep.NextRetry.Equal(start.Add(30*time.Second)) || !strings.Contains(rep.Error, "retrying at") {
		t.Fatalf("after the failed first install: %+v; want failed, next retry in 30s", rep)
	}
	clk.Advance(29 * time.Second)
	if pass(); attempts() != 1 {
		t.Fatalf("retried before its backoff: %v", drv.ran())
	}
	for i, wait := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		clk.AdvanceTo(rep.NextRetry)
		rep = pass()
		if attempts() != i+2 {
			t.Fatalf("attempt %d not made at its time: %v", i+2, drv.ran())
		}
		if got := rep.NextRetry.Sub(clk.Now()); got != wait {
			t.Fatalf("after attempt %d: next retry in %s (report %+v), want %s", i+2, got, rep, wait)
		}
	}
	// The cause goes away (the artifact server, a dependency): the next
	// retry installs it.
	drv.mu.Lock()
	drv.fail = map[string]bool{}
	drv.mu.Unlock()
	clk.AdvanceTo(rep.NextRetry)
	if rep = pass(); rep.State != reconciler.AppHealthy || rep.Version != "1.0.0" || !rep.NextRetry.IsZero() {
		t.Fatalf("after the cause went away: %+v; want 1.0.0 healthy", rep)
	}
	if n := slices.Index(drv.ran(), "1.0.0"); n != 0 {
		t.Fatalf("switches %v", drv.ran())
	}
}
