package etcdstore_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/reconciler"
)

// cluster starts an embedded etcd for a test (skipped under -short: make
// test-unit runs no servers).
func cluster(t *testing.T, n int) *embedded.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: runs an etcd server")
	}
	return embedded.New(t, n)
}

func open(t *testing.T, c *embedded.Cluster, node string, opts etcdstore.Options) *etcdstore.Store {
	t.Helper()
	opts.Endpoints, opts.Identity = c.Endpoints(), node
	st, err := etcdstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// rawClient is a plain etcd client of the cluster, for writing by hand
// what no Store would.
func rawClient(t *testing.T, c *embedded.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// watching runs w's Watch until ctx ends (done closes then), sending the
// time of each wake on woke.
func watching(ctx context.Context, w *etcdstore.Store) (woke chan time.Time, done chan struct{}) {
	woke, done = make(chan time.Time, 100), make(chan struct{})
	go func() {
		defer close(done)
		w.Watch(ctx, func() { woke <- time.Now() })
	}()
	return woke, done
}

// TestWatchWakesOnlyForWhatMatters: a node_done event wakes no watcher,
// any other record event does; once Focus was called, only lease changes
// of an app whose slot the node waits for do, including those made since
// its last read of the leases while no watch followed them; after
// FocusWaves, only the wave_done that opens the node's wave does, no
// verdict on another node, no pause, but a new plan; after
// FocusEnd, only the rollout's end or another rollout's events do.
func TestWatchWakesOnlyForWhatMatters(t *testing.T) {
	c := cluster(t, 1)
	w, a := open(t, c, "w", etcdstore.Options{}), open(t, c, "a", etcdstore.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woke, done := watching(ctx, w)
	<-woke
	time.Sleep(100 * time.Millisecond)
	expect := func(what string, wakes bool) {
		t.Helper()
		wait := 500 * time.Millisecond // for a wake that must not come
		if wakes {
			wait = 5 * time.Second // a loaded machine's watch round trip
		}
		select {
		case <-woke:
			if !wakes {
				t.Fatalf("%s woke the watcher", what)
			}
		case <-time.After(wait):
			if wakes {
				t.Fatalf("%s did not wake the watcher", what)
			}
		}
	}
	appendEvent := func(e reconciler.Event) {
		t.Helper()
		if err := a.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }); err != nil {
			t.Fatal(err)
		}
	}
	appendEvent(reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: "a", Reason: `quoted "type":"node_done"`})
	expect("a node_done", false)
	appendEvent(reconciler.Event{Type: reconciler.EventNodeLost, Rollout: "r1", Node: "b", Reason: `"type":"node_done"`})
	expect("a node_lost whose reason names node_done", true)
	w.Focus("web", false) // waits for its wave: no lease change matters
	l, err := a.Acquire(ctx, "web", 0, "a", "r1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expect("an acquisition while no slot is waited for", false)
	appendEvent(reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: 0})
	expect("a wave_done", true)
	w.FocusWaves("web", "r1", 3) // waits for wave 4: the wave_done of wave 3 opens it
	appendEvent(reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: 2})
	expect("a wave_done two waves before the node's", false)
	appendEvent(reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: 3})
	expect("the wave_done of the wave before the node's", true)
	appendEvent(reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r2", Wave: 0})
	expect("a wave_done of another rollout", true)
	appendEvent(reconciler.Event{Type: reconciler.EventNodeLost, Rollout: "r1", Node: "c", Lease: "5"})
	expect("a node_lost while waiting two waves behind", false)
	appendEvent(reconciler.Event{Type: reconciler.EventNodeUnreachable, Rollout: "r1", Node: "d"})
	expect("a node_unreachable while waiting two waves behind", false)
	appendEvent(reconciler.Event{Type: reconciler.EventPaused, Rollout: "r1"})
	expect("a pause while waiting two waves behind", false)
	appendEvent(reconciler.Event{Type: reconciler.EventOptionsChanged, Rollout: "r1"})
	expect("a new plan while waiting two waves behind", true)
	appendEvent(reconciler.Event{Type: reconciler.EventNodeLost, Rollout: "r2", Node: "c", Lease: "5"})
	expect("a node_lost of another rollout", true)
	w.FocusWaves("web", "", 0)
	appendEvent(reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: 1})
	expect("a wave_done once the focus is off", true)
	w.FocusEnd("web", "r1") // done, in a wave done: only the end matters
	for _, e := range []reconciler.Event{{Type: reconciler.EventNodeLost, Node: "b", Lease: "7"}, {Type: reconciler.EventWaveDone, Wave: 4},
		{Type: reconciler.EventNodeUnreachable, Node: "c"}, {Type: reconciler.EventResumed}} {
		e.Rollout = "r1"
		appendEvent(e)
		expect("a "+e.Type+" of the rollout once only its end matters", false)
	}
	for _, e := range []reconciler.Event{{Type: reconciler.EventNodeLost, Rollout: "r2", Node: "b"}, {Type: reconciler.EventCompleted, Rollout: "r1"},
		{Type: reconciler.EventFailed, Rollout: "r1"}, {Type: reconciler.EventRolledBack, Rollout: "r1"}, {Type: reconciler.EventSuperseded, Rollout: "r1"}} {
		appendEvent(e)
		expect("a "+e.Type+" of "+e.Rollout+" once only r1's end matters", true)
	}
	w.FocusWaves("web", "r1", 2)
	appendEvent(reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: 2})
	expect("the wave_done before the node's once FocusWaves replaced FocusEnd", true)
	w.FocusWaves("web", "", 0)
	w.Focus("db", true) // waits for a slot of db
	time.Sleep(100 * time.Millisecond)
	dbl, err := a.Acquire(ctx, "db", 0, "a", "r1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expect("an acquisition in the app whose slot it waits for (it frees none)", false)
	if _, err := a.Acquire(ctx, "web", 1, "a", "r1", time.Minute); err != nil {
		t.Fatal(err)
	}
	expect("an acquisition in another app", false)
	if err := a.Release(ctx, dbl); err != nil {
		t.Fatal(err)
	}
	expect("a release in the app whose slot it waits for", true)
	w.Focus("db", false)
	// The leases read, then freed while no watch follows them: waiting for
	// a slot again, the watch starts after that read and misses nothing.
	if _, err := w.Leases(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	expect("a release while no slot is waited for", false)
	w.Focus("web", true)
	expect("a release after the last read, once a slot is waited for", true)
	cancel()
	<-done
}

// TestWatchWakesOnChange: a watcher wakes within milliseconds of another
// store's append, acquisition or release, and not for node reports or
// lease renewals.
func TestWatchWakesOnChange(t *testing.T) {
	c := cluster(t, 1)
	w, a := open(t, c, "w", etcdstore.Options{}), open(t, c, "a", etcdstore.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woke, done := watching(ctx, w)
	<-woke                             // the first call, at start
	time.Sleep(100 * time.Millisecond) // let the watch be established
	if err := a.WriteReport(ctx, reconciler.NodeReport{Node: "a"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
		t.Fatal("a node report woke the watcher")
	case <-time.After(300 * time.Millisecond):
	}
	l, err := a.Acquire(ctx, "db", 0, "a", "r1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke: // the acquisition
	case <-time.After(2 * time.Second):
		t.Fatal("an acquisition did not wake the watcher")
	}
	if l, err = a.Renew(ctx, l); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
		t.Fatal("a lease renewal woke the watcher")
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case <-time.After(2 * time.Second):
		t.Fatal("a release did not wake the watcher")
	}
	var lat []time.Duration
	for i := range 20 {
		drain(woke)
		start := time.Now()
		var err error
		if i%2 == 0 {
			err = a.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
				return &reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: i}, nil
			})
		} else {
			_, err = a.Acquire(ctx, "web", i, "a", "r1", time.Minute)
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-woke:
			lat = append(lat, at.Sub(start))
		case <-time.After(2 * time.Second):
			t.Fatalf("write %d: no wake within 2s", i)
		}
	}
	slices.Sort(lat)
	t.Logf("write to wake (the write's round trip included): median %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
	cancel()
	<-done
}

func drain(c chan time.Time) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestDeadAgentIsStale: a report whose writer stopped reads as Stale once
// its liveness lease expires; a live writer's does not.
func TestDeadAgentIsStale(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	reader := open(t, c, "r", etcdstore.Options{})
	live := open(t, c, "live", etcdstore.Options{LivenessTTL: time.Second})
	dead, err := etcdstore.Open(etcdstore.Options{Endpoints: c.Endpoints(), LivenessTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		st   *etcdstore.Store
		node string
	}{{live, "live"}, {dead, "dead"}} {
		if err := w.st.WriteReport(ctx, reconciler.NodeReport{Node: w.node}); err != nil {
			t.Fatal(err)
		}
	}
	reps, err := reader.Reports(ctx)
	if err != nil || reps["dead"].Stale || reps["live"].Stale {
		t.Fatalf("right after writing: %+v, %v", reps, err)
	}
	dead.Close() // the agent dies: no more keep-alives
	deadline := time.Now().Add(10 * time.Second)
	for {
		reps, err = reader.Reports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if reps["dead"].Stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead agent's report never turned stale")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if reps["live"].Stale {
		t.Fatal("the live agent's report is stale: its keep-alive did not run")
	}
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]string{
		"etcd://a:2379":                "[a:2379]",
		"etcd://a:2379,10.0.0.2:2379/": "[a:2379 10.0.0.2:2379]",
		"etcd://[::1]:2379":            "[[::1]:2379]",
	} {
		eps, ok, err := etcdstore.ParseURL(in)
		if err != nil || !ok || fmtList(eps) != want {
			t.Errorf("ParseURL(%q) = %v %v %v, want %s", in, eps, ok, err, want)
		}
	}
	for _, bad := range []string{"etcd://", "etcd://a", "etcd://a:2379,", "etcd://u@a:1", "etcd://a:1/x"} {
		if _, ok, err := etcdstore.ParseURL(bad); !ok || err == nil {
			t.Errorf("ParseURL(%q): ok %v err %v, want an error", bad, ok, err)
		}
	}
	if _, ok, _ := etcdstore.ParseURL("https://git.example.com/fleet.git"); ok {
		t.Error("a Git URL parsed as etcd")
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

// TestSecondAgentWithTheNameIsToldAtOnce: on etcd an agent's liveness key
// says it is alive, so another instance writing the same node's report is
// told at its first write (before it acts), and the first at its next; the
// same instance again (a restarted agent) is not, nor is one whose
// predecessor's liveness lease expired.
func TestSecondAgentWithTheNameIsToldAtOnce(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	rep := func(v string) reconciler.NodeReport {
		return reconciler.NodeReport{Node: "n1", Apps: map[string]reconciler.AppReport{"web": {Version: v}}}
	}
	a := open(t, c, "n1", etcdstore.Options{Instance: "a"})
	if err := a.WriteReport(ctx, rep("1.0.0")); err != nil {
		t.Fatal(err)
	}
	again := open(t, c, "n1", etcdstore.Options{Instance: "a"}) // a restarted
	if err := again.WriteReport(ctx, rep("1.0.1")); err != nil {
		t.Fatalf("the same instance after a restart: %v", err)
	}
	b := open(t, c, "n1", etcdstore.Options{Instance: "b"})
	if err := b.WriteReport(ctx, rep("1.0.2")); !errors.Is(err, fleetrepo.ErrDuplicateNode) {
		t.Fatalf("another instance's first write beside a live agent: %v, want ErrDuplicateNode", err)
	}
	if err := again.WriteReport(ctx, rep("1.0.3")); !errors.Is(err, fleetrepo.ErrDuplicateNode) {
		t.Fatalf("the live agent's next write: %v, want ErrDuplicateNode", err)
	}
	gone, err := etcdstore.Open(etcdstore.Options{Endpoints: c.Endpoints(), Instance: "gone", LivenessTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.WriteReport(ctx, reconciler.NodeReport{Node: "n2"}); err != nil {
		t.Fatal(err)
	}
	gone.Close() // its liveness lease expires
	time.Sleep(2500 * time.Millisecond)
	if err := open(t, c, "n2", etcdstore.Options{Instance: "new"}).WriteReport(ctx, reconciler.NodeReport{Node: "n2"}); err != nil {
		t.Fatalf("a new instance after its predecessor's liveness expired: %v", err)
	}
}

// TestReportWriteIsOneTransaction: after a handle's first write (which
// reads the keys, to find another live instance), a changed report is one
// transaction on the revision the handle wrote; only when another writer
// moved the key does it read it again, and say so.
func TestReportWriteIsOneTransaction(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	var mu sync.Mutex
	calls := map[string]int{}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialOptions: []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			mu.Lock()
			calls[method[strings.LastIndex(method, "/")+1:]]++
			mu.Unlock()
			return invoker(ctx, method, req, reply, cc, opts...)
		})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	count := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := maps.Clone(calls)
		clear(calls)
		return out
	}
	rep := func(v string) reconciler.NodeReport {
		return reconciler.NodeReport{Node: "n1", Apps: map[string]reconciler.AppReport{"web": {Version: v}}}
	}
	a := open(t, c, "n1", etcdstore.Options{Instance: "a", Client: cli})
	if err := a.WriteReport(ctx, rep("1.0.0")); err != nil {
		t.Fatal(err)
	}
	if got := count(); got["Txn"] != 2 {
		t.Fatalf("first write: %v, want 2 Txn (read, then write)", got)
	}
	for _, v := range []string{"1.0.1", "1.0.2"} {
		if err := a.WriteReport(ctx, rep(v)); err != nil {
			t.Fatal(err)
		}
		if got := count(); got["Txn"] != 1 || len(got) != 1 {
			t.Fatalf("write of %s: %v, want one Txn", v, got)
		}
	}
	b := open(t, c, "n1", etcdstore.Options{Instance: "b"})
	if err := b.WriteReport(ctx, rep("2.0.0")); !errors.Is(err, fleetrepo.ErrDuplicateNode) {
		t.Fatalf("another instance's first write beside a live agent: %v, want ErrDuplicateNode", err)
	}
	count()
	if err := a.WriteReport(ctx, rep("1.0.3")); !errors.Is(err, fleetrepo.ErrDuplicateNode) {
		t.Fatalf("the write after another instance's: %v, want ErrDuplicateNode", err)
	}
	if got := count(); got["Txn"] != 3 {
		t.Fatalf("write after another instance's: %v, want 3 Txn (the compare that failed, the read, the write)", got)
	}
	reports, err := a.Reports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v := reports["n1"].Apps["web"].Version; v != "1.0.3" {
		t.Fatalf("report of n1 holds %s, want 1.0.3 (written all the same)", v)
	}
}

// TestCountReports counts the node report keys without reading them.
func TestCountReports(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	st := open(t, c, "op", etcdstore.Options{})
	for _, n := range []string{"a", "b", "c"} {
		if err := open(t, c, n, etcdstore.Options{}).WriteReport(ctx, reconciler.NodeReport{Node: n}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.CountReports(ctx); err != nil || n != 3 {
		t.Fatalf("count = %d, %v: want 3", n, err)
	}
}
