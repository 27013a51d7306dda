package agent

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// passReporter writes reports to the shared state and says when each pass's
// write has returned, so a test knows a pass is over.
type passReporter struct {
	*fleetrepo.Shared
	done chan time.Time
}

func (p *passReporter) WriteReport(ctx context.Context, r reconciler.NodeReport) error {
	err := p.Shared.WriteReport(ctx, r)
	p.done <- r.Time
	return err
}

// idleAgent runs an agent, converged on web 1.0.0, against a counted git
// http-backend, wired as the agent command wires it (desired and shared
// state in one repository, the default options of each), on a fake clock.
// It returns the clock and a function that waits for the pass at the
// clock's time to finish.
func idleAgent(t *testing.T) (*gittest.Requests, *clock.Fake, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	url, reqs := gittest.ServeCounted(t, repo)
	clk := clock.NewFake(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: url, Clock: clk, PollInterval: -1}) // as the agent command opens it
	must(t, err)
	shared, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: url, Clock: clk, Identity: fleetrepo.Identity{Name: "n1"}})
	must(t, err)
	rep := &passReporter{Shared: shared, done: make(chan time.Time, 16)}
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
		Reporter: rep, SharedWatch: shared, Drivers: map[string]driver.Driver{"process": &fakeDriver{fail: map[string]bool{}}},
		Logger: slog.New(slog.DiscardHandler), Clock: clk})
	must(t, err)
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	waitPass := func() {
		t.Helper()
		deadline := time.After(gittest.Deadline)
		for {
			select {
			case at := <-rep.done:
				if !at.Before(clk.Now()) {
					return
				}
			case <-deadline:
				t.Fatalf("no pass of the agent at %s", clk.Now())
			}
		}
	}
	waitPass()
	gittest.Eventually(t, gittest.Deadline, func() bool {
		r := a.last.Load()
		return r != nil && r.Apps["web"].State == reconciler.AppHealthy
	}, "agent converged on web 1.0.0")
	return reqs, clk, waitPass
}

// TestIdleAgentGitTraffic (issue 13 §2): an idle agent costs the Git server
// about one request per 30 s: one ref listing of the tracked branch at
// each --poll (30 s), and a report refresh (a listing and a push) every
// 10 minutes, nothing else. Before, it asked about six times as much: a
// listing of the branch at every pass and from its own watch every 10 s,
// one before every report write (written or not), the shared state's
// listing every minute, and a push of the report every 5 minutes.
func TestIdleAgentGitTraffic(t *testing.T) {
	reqs, clk, waitPass := idleAgent(t)
	for range 2 { // past the start: the watches' first listings, the report once converged
		clk.Advance(30 * time.Second)
		waitPass()
	}
	before := reqs.Counts()
	const passes = 60 // 30 minutes of --poll 30s
	for range passes {
		clk.Advance(30 * time.Second)
		waitPass()
	}
	got := reqs.Counts().Sub(before)
	t.Logf("idle agent, 30 minutes: %s", got)
	// Budget: one listing per pass, and three report refreshes of three
	// requests each (listing, push advertisement, push): 69; the watches'
	// first listings may land late under -race. Before: 138, and the
	// watches' polls (real time, not counted here) on top.
	if want := passes + 3*3 + 3; got.Total() > want {
		t.Fatalf("idle agent over 30 minutes: %s; want at most %d (one per 30 s, and the report refreshes)", got, want)
	}
}

// TestPermitFetchReadsTheBranchAtOnce: a Permit that says this node wrote
// to the tracked branch (a rollback commit) has the agent read the branch
// at the next pass, a recheck moments later, not at the next --poll.
func TestPermitFetchReadsTheBranchAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	url, reqs := gittest.ServeCounted(t, repo)
	clk := clock.NewFake(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: url, Clock: clk, PollInterval: -1})
	must(t, err)
	passes := make(chan time.Time, 16)
	var asked atomic.Int32
	coord := CoordinatorFunc(func(_ context.Context, in DecideInput) (Permit, error) {
		passes <- clk.Now()
		if asked.Add(1) == 2 { // the second pass writes a commit to the branch
			return Permit{Version: in.App.Version, Fetch: true}, nil
		}
		return Permit{Version: in.App.Version}, nil
	})
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
		Coordinator: coord, Drivers: map[string]driver.Driver{"process": &fakeDriver{fail: map[string]bool{}}},
		Logger: slog.New(slog.DiscardHandler), Clock: clk, Poll: time.Hour})
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); must(t, <-done) }()
	wait := func() {
		t.Helper()
		select {
		case <-passes:
		case <-time.After(gittest.Deadline):
			t.Fatal("no pass")
		}
	}
	wait() // the first pass; the release installs off the loop: a second pass follows
	wait() // Fetch asked
	before := reqs.Counts()
	gittest.Eventually(t, gittest.Deadline, func() bool {
		clk.Advance(10 * time.Millisecond) // the recheck the Permit asked for
		select {
		case <-passes:
			return true
		default:
			return false
		}
	}, "a recheck pass after Permit.Fetch")
	if got := reqs.Counts().Sub(before); got.Adverts != 1 {
		t.Fatalf("pass after Permit.Fetch: %s; want one listing of the branch", got)
	}
}
