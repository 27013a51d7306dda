package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
)

// hintedAgent runs an agent reading the tracked branch at url every poll,
// with the tip key of store as its TipHint.
func hintedAgent(t *testing.T, ctx context.Context, url string, c *embedded.Cluster, poll time.Duration) *fakeDriver {
	t.Helper()
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: url, PollInterval: -1})
	must(t, err)
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: c.Endpoints()})
	must(t, err)
	t.Cleanup(func() { st.Close() })
	drv := &fakeDriver{fail: map[string]bool{}}
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
		TipHint: st.TipHint("main"), Drivers: map[string]driver.Driver{"process": drv}, Poll: poll,
		Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return drv
}

// hintedFleet serves a fleet repo with web 1.0.0 over git http-backend
// (its requests counted) beside an embedded etcd, for agents with a tip key.
func hintedFleet(t *testing.T) (context.Context, string, string, *gittest.Requests, *embedded.Cluster) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: runs git http-backend and etcd")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	url, reqs := gittest.ServeCounted(t, repo)
	return ctx, repo, url, reqs, embedded.New(t, 1)
}

func (f *fakeDriver) ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.switches)
}

// TestTipHintWakesAtOnce (issue 13 §2): with the etcd tip key, an agent
// that polls Git once an hour moves to a pushed commit as soon as another
// agent (polling every 200ms here) has read it from Git and published it.
// A bogus tip written into the key is never applied: it only makes agents
// read the branch from Git, and the first to do so puts the real tip back.
func TestTipHintWakesAtOnce(t *testing.T) {
	ctx, repo, url, reqs, c := hintedFleet(t)
	eager := hintedAgent(t, ctx, url, c, 200*time.Millisecond)
	idle := hintedAgent(t, ctx, url, c, time.Hour)
	gittest.Eventually(t, gittest.Deadline, func() bool {
		return slices.Equal(eager.ran(), []string{"1.0.0"}) && slices.Equal(idle.ran(), []string{"1.0.0"})
	}, "both agents on web 1.0.0")

	old := gittest.RevParse(t, repo, "main")
	pushed := time.Now()
	tip := gittest.PushFiles(t, repo, "main", specFiles("web@2.0.0"), "web 2.0.0")
	gittest.Eventually(t, gittest.Deadline, func() bool { return slices.Contains(idle.ran(), "2.0.0") },
		"the agent polling hourly switched to 2.0.0 (woken by the tip key)")
	t.Logf("push -> hourly poller switched: %s", time.Since(pushed).Round(time.Millisecond))

	// Someone writes a wrong tip: the old commit (a move backwards), then
	// garbage. Agents read Git, apply nothing, and restore the real tip.
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: c.Endpoints()})
	must(t, err)
	defer st.Close()
	hint := st.TipHint("main")
	values := make(chan string, 64)
	go hint.WatchTip(ctx, func(v string) { values <- v })
	for _, bogus := range []string{old, "0123456789abcdef0123456789abcdef01234567", "not a commit"} {
		before := reqs.Counts()
		must(t, hint.PublishTip(ctx, bogus))
		waitValue(t, values, bogus)
		waitValue(t, values, tip) // an agent read the branch and put the tip back
		// The tip may be back before this bogus value's reads: an agent
		// slower to answer the one before puts it back too. The reads
		// come all the same (both agents hold another tip than the key).
		gittest.Eventually(t, gittest.Deadline, func() bool { return reqs.Counts().Sub(before).Adverts > 0 },
			fmt.Sprintf("an agent read the branch after bogus tip %q", bogus))
		for name, d := range map[string]*fakeDriver{"eager": eager, "idle": idle} {
			if ran := d.ran(); !slices.Equal(ran, []string{"1.0.0", "2.0.0"}) {
				t.Fatalf("bogus tip %q: %s agent switched %v, want only 1.0.0 then 2.0.0", bogus, name, ran)
			}
		}
	}
}

// waitValue waits for the tip key to hold want.
func waitValue(t *testing.T, values <-chan string, want string) {
	t.Helper()
	deadline := time.After(gittest.Deadline)
	for {
		select {
		case v := <-values:
			if v == want {
				return
			}
		case <-deadline:
			t.Fatalf("the tip key never held %s again", want)
		}
	}
}

// TestTipObjectsSpareTheFetches: the agent that first reads a push from Git
// publishes the objects that lead to it beside the tip key; the agents it
// wakes import them and ask Git only for the ref listing, so one push costs
// the Git server one fetch, not one per agent. Objects published for the
// tip that do not make it whole (another commit's) are not imported: the
// agents fetch from Git and apply the real tip.
func TestTipObjectsSpareTheFetches(t *testing.T) {
	ctx, repo, url, reqs, c := hintedFleet(t)
	eager := hintedAgent(t, ctx, url, c, 200*time.Millisecond)
	idle := []*fakeDriver{hintedAgent(t, ctx, url, c, time.Hour), hintedAgent(t, ctx, url, c, time.Hour), hintedAgent(t, ctx, url, c, time.Hour)}
	on := func(v string) func() bool {
		return func() bool {
			for _, d := range append([]*fakeDriver{eager}, idle...) {
				if !slices.Contains(d.ran(), v) {
					return false
				}
			}
			return true
		}
	}
	gittest.Eventually(t, gittest.Deadline, on("1.0.0"), "every agent on web 1.0.0")

	before := reqs.Counts()
	gittest.PushFiles(t, repo, "main", specFiles("web@2.0.0"), "web 2.0.0")
	gittest.Eventually(t, gittest.Deadline, on("2.0.0"), "every agent on web 2.0.0")
	if got := reqs.Counts().Sub(before); got.Fetches != 1 {
		t.Errorf("a push read by 4 agents: %s, want 1 upload-pack (the first agent's)", got)
	}

	// Objects of the old commit, offered for the next tip: not whole, not
	// imported; the hourly agents fetch the tip from Git themselves.
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: c.Endpoints()})
	must(t, err)
	defer st.Close()
	hint := st.TipHint("main")
	_, stale, err := hint.TipObjects(ctx, gittest.RevParse(t, repo, "main"))
	must(t, err)
	if stale == nil {
		t.Fatal("no objects published for the tip")
	}
	next := gittest.PushFiles(t, repo, "main", specFiles("web@3.0.0"), "web 3.0.0")
	must(t, hint.PublishTipObjects(ctx, next, gittest.RevParse(t, repo, "main~1"), stale))
	must(t, hint.PublishTip(ctx, next))
	gittest.Eventually(t, gittest.Deadline, on("3.0.0"), "every agent on web 3.0.0")
}
