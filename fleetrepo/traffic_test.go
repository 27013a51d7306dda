package fleetrepo

import (
	"context"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
)

// TestUnchangedReportCostsNoRequest (issue 13 §2): over a Git server, a
// report that changed only in its time is not written, and costs no
// request either, until the refresh; before, every call listed the refs.
func TestUnchangedReportCostsNoRequest(t *testing.T) {
	ctx := testContext(t)
	url, reqs := gittest.ServeCounted(t, gittest.NewBare(t, nil))
	clk := clock.NewFake(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	sh, err := OpenShared(ctx, SharedOptions{URL: url, Identity: Identity{Name: "n1"}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	r := testReport("n1", "1.0.0")
	if err := sh.WriteReport(ctx, r); err != nil {
		t.Fatal(err)
	}
	before := reqs.Counts()
	for range 10 {
		clk.Advance(30 * time.Second)
		r.Time = clk.Now()
		if err := sh.WriteReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got := reqs.Counts().Sub(before); got.Total() != 0 {
		t.Fatalf("10 unchanged reports within the refresh: %s, want none", got)
	}
	clk.Advance(DefaultReportRefresh)
	r.Time = clk.Now()
	if err := sh.WriteReport(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := reqs.Counts().Sub(before); got.Pushes == 0 {
		t.Fatalf("report after the refresh: %s, want it pushed", got)
	}
}

// TestUnpolledRemoteWatchAsksNothing: a Desired whose PollInterval is
// negative (the agent's: it reads the branch at its own --poll) wakes once
// and then asks a remote repository nothing.
func TestUnpolledRemoteWatchAsksNothing(t *testing.T) {
	ctx := testContext(t)
	url, reqs := gittest.ServeCounted(t, gittest.NewBare(t, nil))
	d, err := OpenDesired(ctx, DesiredOptions{URL: url, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan struct{}, 1)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Watch(wctx, func() { woke <- struct{}{} }) }()
	<-woke
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := reqs.Counts(); got.Total() != 0 {
		t.Fatalf("unpolled watch of a remote: %s, want none", got)
	}
}
