package fleetrepo

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

func testReport(node, version string) reconciler.NodeReport {
	return reconciler.NodeReport{
		Node: node, Labels: map[string]string{"region": "eu"}, Time: time.Now().UTC(),
		Apps: map[string]reconciler.AppReport{"web": {Version: version, State: reconciler.AppHealthy}},
	}
}

func TestReportsAreTheInventory(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		a, b := openShared(t, url, "n1", nil), openShared(t, url, "n2", nil)
		if err := a.WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
			t.Fatal(err)
		}
		if err := b.WriteReport(ctx, testReport("n2", "1.0.0")); err != nil {
			t.Fatal(err)
		}
		if err := a.WriteReport(ctx, testReport("n1", "1.1.0")); err != nil {
			t.Fatal(err)
		}
		tip := gittest.RevParse(t, bare, NodesPrefix+"n1")
		// Only Time changed: no new commit.
		if err := a.WriteReport(ctx, testReport("n1", "1.1.0")); err != nil {
			t.Fatal(err)
		}
		if now := gittest.RevParse(t, bare, NodesPrefix+"n1"); now != tip {
			t.Errorf("a report that changed only Time made commit %s", now)
		}
		inv, err := openShared(t, url, "cli", nil).Reports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv) != 2 || inv["n1"].Apps["web"].Version != "1.1.0" || inv["n2"].Labels["region"] != "eu" {
			t.Fatalf("inventory = %+v", inv)
		}
		log := gittest.Git(t, bare, "log", "--format=%s", NodesPrefix+"n1")
		if log != "n1: web 1.1.0 healthy\nn1: web 1.0.0 healthy" {
			t.Errorf("report chain messages:\n%s", log)
		}
	})
}

func TestAppendIsCompareAndSwapUnderContention(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		const writers, each = 5, 4
		var wg sync.WaitGroup
		for w := range writers {
			sh := openShared(t, url, fmt.Sprintf("n%d", w), nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					err := sh.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
						return &reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1",
							By: fmt.Sprintf("n%d", w), Node: fmt.Sprintf("n%d-%d-after-%d", w, i, len(cur))}, nil
					})
					if err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		events, err := openShared(t, url, "reader", nil).Record(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != writers*each {
			t.Fatalf("record has %d events, want %d", len(events), writers*each)
		}
		for i, ev := range events {
			// Each event was decided on the record as it was: no lost update.
			if !strings.HasSuffix(ev.Node, fmt.Sprintf("-after-%d", i)) {
				t.Errorf("event %d = %q, decided on a different record length", i, ev.Node)
			}
		}
	})
}

func TestAppendNilAppendsNothingAndRecordIsCached(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	ctx := testContext(t)
	sh := openShared(t, bare, "n1", nil)
	started := reconciler.Event{Type: reconciler.EventStarted, Rollout: "c1", Target: "1.1.0", Waves: [][]string{{"n1"}, {"n2", "n3"}}}
	once := func(cur []reconciler.Event) (*reconciler.Event, error) {
		if len(cur) > 0 {
			return nil, nil
		}
		return &started, nil
	}
	for range 2 {
		if err := sh.Append(ctx, "web", once); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	if err := sh.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return nil, boom }); err != boom {
		t.Fatalf("decide's error = %v, want it unwrapped", err)
	}
	events, err := sh.Record(ctx, "web")
	if err != nil || len(events) != 1 || len(events[0].Waves) != 2 {
		t.Fatalf("Record = %+v, %v", events, err)
	}
	if n := gittest.Git(t, bare, "rev-list", "--count", RolloutPrefix+"web"); n != "1" {
		t.Errorf("record has %s commits, want 1", n)
	}
}

// Large fleets keep the shared state in a repository of its own, which
// starts empty: no branch, no commit.
func TestSharedStateInAnEmptyRepository(t *testing.T) {
	for _, transport := range []string{"file", "http"} {
		t.Run(transport, func(t *testing.T) {
			bare := filepath.Join(t.TempDir(), "shared.git")
			gittest.Git(t, "", "init", "--quiet", "--bare", bare)
			url := bare
			if transport == "http" {
				url = gittest.Serve(t, bare)
			}
			ctx := testContext(t)
			sh := openShared(t, url, "n1", nil)
			if ls, err := sh.Leases(ctx, "web"); err != nil || len(ls) != 0 {
				t.Fatalf("Leases of an empty repository = %v, %v", ls, err)
			}
			if _, err := sh.Acquire(ctx, "web", 0, "n1", "r1", time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := sh.WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
				t.Fatal(err)
			}
			if inv, err := openShared(t, url, "cli", nil).Reports(ctx); err != nil || len(inv) != 1 {
				t.Fatalf("Reports = %v, %v", inv, err)
			}
		})
	}
}

// A report that changed only in Time is written again once ReportRefresh
// has passed on the writer's clock, so readers can tell the node is alive.
func TestReportRefresh(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	ctx := testContext(t)
	clock := newFakeClock()
	sh, err := OpenShared(ctx, SharedOptions{URL: bare, Clock: clock, ReportRefresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	count := func() string { return gittest.Git(t, bare, "rev-list", "--count", NodesPrefix+"n1") }
	for _, step := range []struct {
		advance time.Duration
		want    string
	}{{0, "1"}, {30 * time.Second, "1"}, {31 * time.Second, "2"}, {time.Second, "2"}} {
		clock.Advance(step.advance)
		if err := sh.WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
			t.Fatal(err)
		}
		if got := count(); got != step.want {
			t.Fatalf("after %s: %s commits, want %s", step.advance, got, step.want)
		}
	}
	r := testReport("n1", "1.0.0")
	r.SpecError = "apps.web.version: conflicting values"
	r.Apps["api"] = reconciler.AppReport{Version: "3.0.0", Target: "3.1.0", State: reconciler.AppUpgrading}
	if got, want := Summary(r), "n1: api 3.0.0 upgrading to 3.1.0, web 1.0.0 healthy; spec error"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}
