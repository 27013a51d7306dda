package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
)

// TestUnreachableServerShowsInFreshness (issue 14 §5): while the fleet
// repo cannot be read, the last fetch time stays put and the time since it
// grows, in /healthz and the reconciler_tip_* metrics, next to the accepted
// tip and its commit time; the next read resets it.
func TestUnreachableServerShowsInFreshness(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	tip := plumbing.NewHash(gittest.RevParse(t, repo, "main"))
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: repo})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
		Drivers: map[string]driver.Driver{"process": &fakeDriver{fail: map[string]bool{}}}, Registry: reg,
		Logger: slog.New(slog.DiscardHandler), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Reconcile(ctx) {
		t.Fatal("not converged")
	}
	co, err := desired.CommitObject(tip)
	if err != nil {
		t.Fatal(err)
	}
	c := co.Committer.When
	if got := gauge(t, reg, "reconciler_tip_commit_timestamp_seconds"); got != float64(c.Unix()) {
		t.Fatalf("commit timestamp %v, want %d", got, c.Unix())
	}
	if got := gauge(t, reg, "reconciler_tip_fetch_timestamp_seconds"); got != float64(start.Unix()) {
		t.Fatalf("fetch timestamp %v, want %d", got, start.Unix())
	}

	// The server goes away for five minutes.
	if err := os.Rename(repo, repo+".gone"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Minute)
	a.Reconcile(ctx)
	if got := gauge(t, reg, "reconciler_tip_since_fetch_seconds"); got != 300 {
		t.Fatalf("since fetch %v while unreachable, want 300", got)
	}
	if got := gauge(t, reg, "reconciler_tip_fetch_timestamp_seconds"); got != float64(start.Unix()) {
		t.Fatalf("fetch timestamp moved to %v without a read", got)
	}
	w := httptest.NewRecorder()
	a.healthz(w, httptest.NewRequest("GET", "/healthz", nil))
	var h Healthz
	if err := json.Unmarshal(w.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if h.Tip.Accepted != tip.String() || !h.Tip.Fetched.Equal(start) || h.Tip.SinceFetch != 300 || !h.Tip.CommitTime.Equal(c) {
		t.Fatalf("/healthz tip while unreachable: %s", w.Body.String())
	}

	// Back: the next read resets it.
	if err := os.Rename(repo+".gone", repo); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	a.Reconcile(ctx)
	if got := gauge(t, reg, "reconciler_tip_since_fetch_seconds"); got != 0 {
		t.Fatalf("since fetch %v after a read, want 0", got)
	}
}
