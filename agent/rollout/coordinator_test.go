package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// testClock is a fake clock shared by a coordinator and its Shared handle;
// the lease goroutine's waits go to ticks, fired by hand (never, unless a
// test sets them).
type testClock struct {
	*clock.Fake
	ticks *ticks
}

func (c *testClock) After(d time.Duration) <-chan time.Time {
	if c.ticks == nil {
		return nil // blocks: no background renewal unless a test asks
	}
	return c.ticks.after(d)
}

func (c *testClock) advance(d time.Duration) { c.Fake.Advance(d) }

// node is one coordinator over its own Shared handle of a real bare repo.
type node struct {
	name   string
	clock  *testClock
	shared *fleetrepo.Shared
	coord  *Coordinator
}

func newNode(t *testing.T, repo, name string, rollback RollbackFunc) *node {
	t.Helper()
	c := &testClock{Fake: clock.NewFake(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))}
	sh, err := fleetrepo.OpenShared(context.Background(), fleetrepo.SharedOptions{URL: repo, Clock: c,
		Identity: fleetrepo.Identity{Name: name}, ReportRefresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	co, err := New(Options{Node: name, Shared: sh, Rollback: rollback, LeaseTTL: 30 * time.Second, Clock: c,
		StartJitter: -1}) // these tests step one node; TestStartIsJittered has its own
	if err != nil {
		t.Fatal(err)
	}
	return &node{name: name, clock: c, shared: sh, coord: co}
}

func app(rollbackOnFail bool) spec.App {
	return spec.App{Name: "web", Version: "1.1.0", Nodes: spec.Targets{All: true},
		Rollout: spec.Rollout{Strategy: spec.StrategyRolling, BatchSize: 1, RollbackOnFail: rollbackOnFail,
			NodeTimeout: spec.Duration{Duration: time.Minute}, OnUnreachable: spec.OnUnreachableSkip}}
}

func input(a spec.App, nodes ...string) agent.DecideInput {
	f := &spec.Fleet{Apps: map[string]spec.App{"web": a}, Nodes: map[string]spec.Node{}}
	for _, n := range nodes {
		f.Nodes[n] = spec.Node{}
	}
	return agent.DecideInput{Commit: plumbing.NewHash("c0ffee0000000000000000000000000000000001"), Fleet: f, App: a,
		Local: agent.Local{Active: "1.0.0"}}
}

// TestUpgradeUnderLease: the first decision starts the rollout and takes a
// lease; the switch is handed over with the lease's token; Done records
// node_done fenced by that token and frees the slot.
func TestUpgradeUnderLease(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	a := newNode(t, repo, "a", nil)
	in := input(app(true), "a")
	d, err := a.coord.Permit(ctx, in)
	if err != nil || d.Version != "1.1.0" || d.Lease == nil || d.Lease.Token() == "" {
		t.Fatalf("permit = %+v, %v: want an upgrade under a lease", d, err)
	}
	d.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
	r := latest(t, a)
	if r.Done["a"] != d.Lease.Token() {
		t.Fatalf("node_done of a = %q, want its lease as renewed by the fence %s", r.Done["a"], d.Lease.Token())
	}
	leases, _ := a.shared.Leases(ctx, "web")
	for _, l := range leases {
		if l.Held() {
			t.Fatalf("slot %d still held by %s after Done", l.Slot, l.Holder)
		}
	}
}

// TestFencedAfterTakeover: a holder that went silent is recorded lost (not
// failed: issue 13 §2) by an observer, no rollback is asked for, and its
// late success under the lost lease does not count.
func TestFencedAfterTakeover(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	var asked fleetrepo.RollbackRequest
	rollback := func(_ context.Context, req fleetrepo.RollbackRequest) (string, error) {
		asked = req
		return "", ErrNoRollback // as when another agent already wrote it
	}
	a := newNode(t, repo, "a", rollback)
	b := newNode(t, repo, "b", rollback)
	in := input(app(true), "a", "b")
	d, err := a.coord.Permit(ctx, in)
	if err != nil || d.Lease == nil {
		t.Fatalf("a: %+v, %v", d, err)
	}
	// b sees a's lease, then a TTL passes on b's clock with no renewal.
	in.Local = agent.Local{Active: "1.0.0"}
	if _, err := b.coord.Permit(ctx, in); err != nil {
		t.Fatal(err)
	}
	b.clock.advance(31 * time.Second)
	if _, err := b.coord.Permit(ctx, in); err != nil {
		t.Fatal(err)
	}
	r := latest(t, b)
	if len(r.Lost["a"]) != 1 || hasFailed(r, "a") {
		t.Fatalf("b did not record a's expired lease as lost (not failed): %+v", r)
	}
	if asked.App != "" {
		t.Fatalf("a lost lease asked for a rollback: %+v", asked)
	}
	// a, which stood still past its TTL too, finishes late: its fence (a
	// renewal) is refused, the success under the lost lease never recorded.
	a.clock.advance(31 * time.Second)
	d.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
	r = latest(t, a)
	if _, done := r.Done["a"]; done {
		t.Fatal("a late node_done under the lost lease counted")
	}
	if r.Outcome != reconciler.OutcomeNone {
		t.Fatalf("outcome %q, want the rollout going on (a retried)", r.Outcome)
	}
}

// Also decided (issue 17): a rollback that lost to a person's newer commit
// (ErrSuperseded) appends no rolled_back event: before, one was appended
// with an empty rollback commit, claiming a rollback no commit made. A
// rollback written appends it with the commit.
func TestRolledBackAlwaysNamesItsCommit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, commit string
		err          error
	}{{"superseded", "", ErrNoRollback}, {"written", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			repo := gittest.NewBare(t, nil)
			calls := 0
			a := newNode(t, repo, "a", func(context.Context, fleetrepo.RollbackRequest) (string, error) {
				calls++
				return tc.commit, tc.err
			})
			in := input(app(true), "a")
			d, err := a.coord.Permit(ctx, in)
			if err != nil || d.Lease == nil {
				t.Fatalf("a: %+v, %v", d, err)
			}
			d.Lease.Finish(ctx, reconciler.AppReport{Version: "1.0.0", State: reconciler.AppFailed, Error: "not healthy"}, errors.New("not healthy"))
			in.Local.Failed = "1.1.0"
			if _, err := a.coord.Permit(ctx, in); err != nil {
				t.Fatal(err)
			}
			r := latest(t, a)
			events, _ := a.shared.Record(ctx, "web")
			for _, e := range events {
				if e.Type == reconciler.EventRolledBack && e.RollbackCommit == "" {
					t.Fatalf("rolled_back with no rollback commit: %+v", e)
				}
			}
			if tc.commit != "" && (r.Outcome != reconciler.OutcomeRolledBack || r.Rollback != tc.commit) {
				t.Fatalf("outcome %q rollback %q, want rolled_back with %s", r.Outcome, r.Rollback, tc.commit)
			}
			if calls != 1 {
				t.Fatalf("RollbackFunc called %d times in one pass, want 1", calls)
			}
		})
	}
}

// TestLostLeaseBeforeSwitch: a node whose lease was broken before it
// switches gives the slot up and does not switch.
func TestLostLeaseBeforeSwitch(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	a := newNode(t, repo, "a", nil)
	in := input(app(false), "a")
	// Start the rollout and take the lease, then have an operator break it.
	if _, err := a.shared.Acquire(ctx, "web", 0, "a", "ignored", time.Minute); err != nil {
		t.Fatal(err)
	}
	op := newNode(t, repo, "operator", nil)
	if _, err := op.shared.Break(ctx, "web", 0); err != nil {
		t.Fatal(err)
	}
	rin, err := a.coord.input(ctx, in, nil, &reconciler.Folding{})
	if err != nil {
		t.Fatal(err)
	}
	stale := reconciler.Lease{App: "web", Slot: 0, Holder: "a", Rollout: "ignored", TTL: time.Minute,
		Token: plumbing.NewHash("1111111111111111111111111111111111111111").String()}
	out, _ := a.coord.upgrade(ctx, in, reconciler.Decision{Action: reconciler.Upgrade, Lease: stale, Version: "1.1.0",
		Rollout: reconciler.Latest(rin.Record)})
	if out.Version != "" || out.Waiting == "" {
		t.Fatalf("decision = %+v: want no switch without a renewed lease", out)
	}
}

func latest(t *testing.T, n *node) *reconciler.Rollout {
	t.Helper()
	events, err := n.shared.Record(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	r := reconciler.Latest(events)
	if r == nil {
		t.Fatal("no rollout recorded")
	}
	return r
}

// counting wraps the real shared state and counts reads.
type counting struct {
	Shared
	reads   int
	reports int // of reads, Reports
}

func (c *counting) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	c.reads++
	return c.Shared.Record(ctx, app)
}

func (c *counting) Reports(ctx context.Context) (map[string]reconciler.NodeReport, error) {
	c.reads++
	c.reports++
	return c.Shared.Reports(ctx)
}

// TestSettledNodeReadsNothing: once a node is up to date and the rollout has
// ended, further passes at the same tip read no shared state; a new tip does.
func TestSettledNodeReadsNothing(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	a := newNode(t, repo, "a", nil)
	cs := &counting{Shared: a.shared}
	a.coord.opt.Shared = cs
	in := input(app(true), "a")
	d, err := a.coord.Permit(ctx, in)
	if err != nil || d.Lease == nil {
		t.Fatalf("permit = %+v, %v", d, err)
	}
	d.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
	in.Local.Active = "1.1.0"
	for range 3 { // record wave done, completion; then settled
		if _, err := a.coord.Permit(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if r := latest(t, a); r.Outcome != reconciler.OutcomeCompleted {
		t.Fatalf("outcome %q", r.Outcome)
	}
	before := cs.reads
	for range 5 {
		if d, err := a.coord.Permit(ctx, in); err != nil || d.Version != "1.1.0" {
			t.Fatalf("settled decision = %+v, %v", d, err)
		}
	}
	if cs.reads != before {
		t.Fatalf("%d shared-state reads by a settled node", cs.reads-before)
	}
	in.Commit = plumbing.NewHash("c0ffee0000000000000000000000000000000002")
	if _, err := a.coord.Permit(ctx, in); err != nil {
		t.Fatal(err)
	}
	if cs.reads == before {
		t.Fatal("a new tip read no shared state")
	}
}

// TestStartIsJittered: a node that finds a tip whose rollout nobody started
// waits its own part of StartJitter (the same on every pass), reading no
// node report meanwhile, then starts it; a node whose wait ends later finds
// it started and takes part. Without the jitter every node of a fleet that
// learns of a push at once reads every report to start a rollout only one
// can (docs/scale.md).
func TestStartIsJittered(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	nodes := map[string]*node{}
	for _, name := range []string{"a", "b"} {
		n := newNode(t, repo, name, nil)
		co, err := New(Options{Node: name, Shared: &counting{Shared: n.shared}, LeaseTTL: 30 * time.Second, Clock: n.clock, StartJitter: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		n.coord = co
		nodes[name] = n
	}
	in := input(app(true), "a", "b")
	var first, second *node
	waits := map[string]time.Time{}
	for name, n := range nodes {
		p, err := n.coord.Permit(ctx, in)
		if err != nil || p.Version != "" || p.Recheck.IsZero() || !strings.Contains(p.Waiting, "about to start the rollout") {
			t.Fatalf("%s: first permit %+v, %v: want a wait before starting", name, p, err)
		}
		if wait := p.Recheck.Sub(n.clock.Now()); wait < 0 || wait >= 10*time.Second {
			t.Fatalf("%s: waits %s, want within the 10s jitter", name, wait)
		}
		again, err := n.coord.Permit(ctx, in)
		if err != nil || !again.Recheck.Equal(p.Recheck) {
			t.Fatalf("%s: second permit %+v, %v: want the same wait (until %s)", name, again, err, p.Recheck)
		}
		if c := n.coord.opt.Shared.(*counting); c.reports != 0 {
			t.Fatalf("%s read the node reports %d times while waiting to start", name, c.reports)
		}
		waits[name] = p.Recheck
	}
	first, second = nodes["a"], nodes["b"]
	if waits["b"].Before(waits["a"]) {
		first, second = second, first
	}
	first.clock.AdvanceTo(waits[first.name])
	if p, err := first.coord.Permit(ctx, in); err != nil || strings.Contains(p.Waiting, "about to start") {
		t.Fatalf("%s after its wait: %+v, %v: want it to start the rollout", first.name, p, err)
	}
	if r := latest(t, first); r.Target != "1.1.0" || len(r.Waves) != 2 {
		t.Fatalf("record after the first start: %+v", r)
	}
	if c := first.coord.opt.Shared.(*counting); c.reports != 1 {
		t.Errorf("%s read the node reports %d times to start the rollout, want 1", first.name, c.reports)
	}
	second.clock.AdvanceTo(waits[second.name])
	if p, err := second.coord.Permit(ctx, in); err != nil || strings.Contains(p.Waiting, "about to start") {
		t.Fatalf("%s after its wait: %+v, %v: want it in the started rollout", second.name, p, err)
	}
	if c := second.coord.opt.Shared.(*counting); c.reports != 0 {
		t.Errorf("%s read the node reports %d times though the rollout was started", second.name, c.reports)
	}
}

// waveFocused is a Shared that notes what the coordinator tells its watch
// of the wave_done events it waits for.
type waveFocused struct {
	Shared
	rollout string
	from    int
	endOnly bool // FocusEnd was called last
}

func (w *waveFocused) FocusWaves(_, rollout string, from int) {
	w.rollout, w.from, w.endOnly = rollout, from, false
}

func (w *waveFocused) FocusEnd(_, rollout string) { w.rollout, w.from, w.endOnly = rollout, -1, true }

// TestFarNodeWaitsForTheWaveBeforeItsOwn: a node two or more waves behind
// asks its watch for the wave_done of the wave before its own only; a node
// of the next wave for every one.
func TestFarNodeWaitsForTheWaveBeforeItsOwn(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	in := input(app(true), "a", "b", "c", "d")
	var held agent.Permit
	for _, name := range []string{"a", "b", "c", "d"} {
		n := newNode(t, repo, name, nil)
		wf := &waveFocused{Shared: n.coord.opt.Shared, from: -1}
		n.coord.opt.Shared = wf
		p, err := n.coord.Permit(ctx, in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := latest(t, n)
		k := r.WaveOf(name)
		switch {
		case p.Lease != nil:
			held = p
			if wf.from != 0 {
				t.Errorf("%s (wave %d) holds a lease and focuses from wave %d", name, k, wf.from)
			}
		case k <= 1:
			if wf.from != 0 {
				t.Errorf("%s (wave %d, next to open) leaves out wave_done events below %d", name, k, wf.from)
			}
		default:
			if wf.from != k-1 || wf.rollout != r.ID {
				t.Errorf("%s (wave %d, %d behind) focuses from wave %d of %q, want %d of %q", name, k, k, wf.from, wf.rollout, k-1, r.ID)
			}
		}
	}
	if held.Lease == nil {
		t.Fatal("no node took the lease of wave 0")
	}
}

// leaseFocused is a Shared that notes what the coordinator tells its watch
// of lease changes, and whose record reads fail while failing is set.
type leaseFocused struct {
	Shared
	failing error
	leases  map[string]bool // app -> whether lease changes matter, as last told
}

func (l *leaseFocused) Focus(app string, matter bool) { l.leases[app] = matter }

func (l *leaseFocused) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	if l.failing != nil {
		return nil, l.failing
	}
	return l.Shared.Record(ctx, app)
}

// TestFailedReadFocusesAwayFromLeases: a pass that could not read the
// shared state tells the watch that no lease change matters: its retry
// after a backoff does.
func TestFailedReadFocusesAwayFromLeases(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	in := input(app(true), "a", "b")
	b := newNode(t, repo, "b", nil)
	lf := &leaseFocused{Shared: b.coord.opt.Shared, leases: map[string]bool{},
		failing: &fleetrepo.TransientError{Op: "read rollout record", Repo: repo, Err: errors.New("deadline exceeded")}}
	b.coord.opt.Shared = lf
	if _, err := b.coord.Permit(ctx, in); err == nil {
		t.Fatal("a pass whose record read failed: no error")
	}
	if matter, told := lf.leases["web"]; !told || matter {
		t.Fatalf("after a failed read the watch was told lease changes matter %v (told: %v): want told they do not", matter, told)
	}
}

// reportCounter is a Shared that counts its node reports (as etcd does).
type reportCounter struct {
	Shared
	n   int
	err error
}

func (r reportCounter) CountReports(context.Context) (int, error) { return r.n, r.err }

// noCount is a Shared that does not count its reports (as Git).
type noCount struct{ Shared }

// TestStartWindowGrowsWithTheFleet: the start is spread over StartJitter
// for every ten nodes: those of the app's last rollout, those the spec
// declares, or, for a first rollout, the reports the store counts; at
// least StartJitter. The nodes' turns then spread over the whole window.
func TestStartWindowGrowsWithTheFleet(t *testing.T) {
	ctx := context.Background()
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("n", i)
		}
		return out
	}
	declared := func(n int) agent.DecideInput {
		in := input(app(true), "a")
		in.Fleet = &spec.Fleet{Nodes: map[string]spec.Node{}}
		for _, name := range names(n) {
			in.Fleet.Nodes[name] = spec.Node{}
		}
		return in
	}
	last := &reconciler.Rollout{Waves: [][]string{names(250), names(250)}}
	for _, tc := range []struct {
		name   string
		shared Shared
		in     agent.DecideInput
		folded *reconciler.Rollout
		want   time.Duration
	}{
		{"a small fleet", noCount{}, declared(3), nil, time.Second},
		{"declared nodes", noCount{}, declared(40), nil, 4 * time.Second},
		{"the last rollout's plan", reportCounter{n: 1000}, declared(40), last, 50 * time.Second},
		{"a first rollout: counted reports", reportCounter{n: 1000}, declared(40), nil, 100 * time.Second},
		{"a count that fails: declared nodes", reportCounter{err: errors.New("etcd down")}, declared(40), nil, 4 * time.Second},
	} {
		c, err := New(Options{Node: "a", Shared: tc.shared, LeaseTTL: 30 * time.Second, StartJitter: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.startWindow(ctx, tc.in, reconciler.Input{Folded: tc.folded}); got != tc.want {
			t.Errorf("%s: window %s, want %s", tc.name, got, tc.want)
		}
	}
	// 200 nodes of a 1,000-node fleet: their turns cover the 100 s window.
	var latest time.Duration
	for _, name := range names(200) {
		c, err := New(Options{Node: name, Shared: reportCounter{n: 1000}, LeaseTTL: 30 * time.Second, StartJitter: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		now := c.opt.Clock.Now()
		at, wait := c.startAt(ctx, declared(0), reconciler.Input{})
		if d := at.Sub(now); d >= 100*time.Second || d < 0 {
			t.Fatalf("%s starts %s after the push, outside the window", name, d)
		} else if wait {
			latest = max(latest, d)
		}
	}
	if latest < 50*time.Second {
		t.Errorf("the latest of 200 turns is %s into a 100 s window: want them spread over it", latest)
	}
}

// leaseCounting counts lease reads.
type leaseCounting struct {
	Shared
	reads int
}

func (l *leaseCounting) Leases(ctx context.Context, app string) ([]reconciler.Lease, error) {
	l.reads++
	return l.Shared.Leases(ctx, app)
}

// TestWaitingNodeReadsTheLeasesOncePerTTL: a node of the wave after the
// open one reads the leases at its first pass and then once per lease TTL,
// however often it passes; one two or more waves behind, or done, keeps its
// last read; a node of the open wave reads them at every pass.
func TestWaitingNodeReadsTheLeasesOncePerTTL(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	in := input(app(true), "a", "b", "c", "d")
	nodes := map[string]*node{}
	counts := map[string]*leaseCounting{}
	var held agent.Permit
	for _, name := range []string{"a", "b", "c", "d"} {
		n := newNode(t, repo, name, nil)
		counts[name] = &leaseCounting{Shared: n.coord.opt.Shared}
		n.coord.opt.Shared = counts[name]
		nodes[name] = n
		p, err := n.coord.Permit(ctx, in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Lease != nil {
			held = p
		}
	}
	if held.Lease == nil {
		t.Fatal("no node took the lease of the open wave")
	}
	r := latest(t, nodes["a"])
	var open, next, far string
	for name := range nodes {
		switch r.WaveOf(name) - r.WavesDone() {
		case 0:
			open = name
		case 1:
			next = name
		case 2:
			far = name
		}
	}
	if open == "" || next == "" || far == "" {
		t.Fatalf("plan %v: want a node in the open wave, one in the next and one after", r.Waves)
	}
	pass := func(name string, d time.Duration) {
		t.Helper()
		nodes[name].clock.advance(d)
		if _, err := nodes[name].coord.Permit(ctx, in); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	reads := func(name string) int { return counts[name].reads }
	before := map[string]int{open: reads(open), next: reads(next), far: reads(far)}
	for range 3 {
		for _, name := range []string{open, next, far} {
			pass(name, time.Second)
		}
	}
	for _, name := range []string{next, far} {
		if got := reads(name) - before[name]; got != 0 {
			t.Errorf("%s (a later wave) read the leases %d times in 3 passes within the TTL, want 0", name, got)
		}
	}
	if got := reads(open) - before[open]; got < 3 {
		t.Errorf("%s (the open wave) read the leases %d times in 3 passes, want each pass", open, got)
	}
	for _, name := range []string{next, far} {
		pass(name, 30*time.Second) // newNode's lease TTL
	}
	if got := reads(next) - before[next]; got != 1 {
		t.Errorf("%s (the next wave) read the leases %d times after a TTL, want once", next, got)
	}
	if got := reads(far) - before[far]; got != 0 {
		t.Errorf("%s (two waves behind) read the leases %d times after a TTL, want none", far, got)
	}
	// Done, the open wave's node keeps its last read too.
	held.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
	if _, done := latest(t, nodes[open]).Done[open]; !done {
		t.Fatalf("%s finished but is not recorded done", open)
	}
	before[open] = reads(open)
	for range 3 {
		pass(open, time.Second)
	}
	if got := reads(open) - before[open]; got != 0 {
		t.Errorf("%s (done) read the leases %d times in 3 passes, want 0", open, got)
	}
}

// passes makes k passes of n, its clock advanced by every before each.
func (n *node) passes(t *testing.T, ctx context.Context, in agent.DecideInput, k int, every time.Duration) {
	t.Helper()
	for range k {
		n.clock.advance(every)
		if _, err := n.coord.Permit(ctx, in); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
}

// TestDoneNodeOfTheOpenWaveReadsTheLeasesOncePerTTL: a node done while
// its wave is still open judges the nodes after it (reconciler.Judges), so
// it reads the leases again once its last read is a TTL old; until then it
// reuses it.
func TestDoneNodeOfTheOpenWaveReadsTheLeasesOncePerTTL(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	spec2 := app(true)
	spec2.Rollout.BatchSize = 2
	in := input(spec2, "a", "b", "c")
	a, b := newNode(t, repo, "a", nil), newNode(t, repo, "b", nil)
	counted := &leaseCounting{Shared: a.coord.opt.Shared}
	a.coord.opt.Shared = counted
	pa, err := a.coord.Permit(ctx, in)
	if err != nil || pa.Lease == nil {
		t.Fatalf("a: %+v, %v: want a lease of wave 1", pa, err)
	}
	if pb, err := b.coord.Permit(ctx, in); err != nil || pb.Lease == nil {
		t.Fatalf("b: %+v, %v: want the other lease of wave 1", pb, err)
	}
	pa.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
	if _, err := a.coord.Permit(ctx, in); err != nil { // done; b still switching
		t.Fatal(err)
	}
	if r := latest(t, a); !hasDone(r, "a") || r.WavesDone() != 0 {
		t.Fatalf("a done %v, %d waves done: want a done in the open wave", hasDone(r, "a"), r.WavesDone())
	}
	before := counted.reads
	a.passes(t, ctx, in, 3, time.Second)
	if got := counted.reads - before; got != 0 {
		t.Errorf("a (done, its wave open) read the leases %d times in 3 passes within the TTL, want 0", got)
	}
	a.clock.advance(30 * time.Second) // newNode's lease TTL
	if _, err := a.coord.Permit(ctx, in); err != nil {
		t.Fatal(err)
	}
	if got := counted.reads - before; got != 1 {
		t.Errorf("a (done, its wave open) read the leases %d times after a TTL, want once: it judges b", got)
	}
}

// TestVerdictReadReplacesTheKeptLeases: a node done with its wave keeps
// its last read of the leases; when that read shows a verdict due (the
// next wave's node took no lease within nodeTimeout) and the fresh read
// made before recording it shows it is not (it took one since), the fresh
// read is kept: the next pass reads nothing and decides nothing again.
func TestVerdictReadReplacesTheKeptLeases(t *testing.T) {
	ctx := context.Background()
	repo := gittest.NewBare(t, nil)
	in := input(app(true), "a", "b")
	a, b := newNode(t, repo, "a", nil), newNode(t, repo, "b", nil)
	counted := &leaseCounting{Shared: a.coord.opt.Shared}
	a.coord.opt.Shared = counted
	p, err := a.coord.Permit(ctx, in)
	if err != nil || p.Lease == nil {
		t.Fatalf("a: %+v, %v: want the lease of wave 1", p, err)
	}
	p.Lease.Finish(ctx, reconciler.AppReport{Version: "1.1.0", State: reconciler.AppHealthy}, nil)
	if _, err := a.coord.Permit(ctx, in); err != nil { // done: records wave 1 done, keeps its read
		t.Fatal(err)
	}
	if q, err := b.coord.Permit(ctx, in); err != nil || q.Lease == nil {
		t.Fatalf("b: %+v, %v: want the lease of wave 2", q, err)
	}
	a.clock.advance(2 * time.Minute) // past nodeTimeout: a's kept read shows b without a lease
	if _, err := a.coord.Permit(ctx, in); err != nil {
		t.Fatal(err)
	}
	if r := latest(t, a); r.Skipped["b"] != "" || r.Failed["b"] != "" {
		t.Fatalf("b recorded %q / %q while it holds a lease", r.Skipped["b"], r.Failed["b"])
	}
	before := counted.reads
	a.passes(t, ctx, in, 3, time.Second)
	if got := counted.reads - before; got != 0 {
		t.Errorf("a read the leases %d times in 3 passes after a verdict found not due, want 0", got)
	}
}

// pushing is a Shared whose watch pushes every change (as etcd's).
type pushing struct{ Shared }

func (pushing) PushesChanges() bool { return true }

// TestWaitingNodesLookAgainByWhatTheyJudge: on a store that pushes
// changes, the nodes of the open wave and the first judges of its last
// nodes (the first places of the next wave) look again every ActivePoll,
// the rest of the next wave six times as seldom, the nodes further behind
// and those of a wave done 24 times; on a store that does not push, every
// node every ActivePoll.
func TestWaitingNodesLookAgainByWhatTheyJudge(t *testing.T) {
	r := &reconciler.Rollout{ID: "r1", Waves: [][]string{{"z0", "z1"}, {"a0", "a1", "a2", "a3", "a4"}, {"b0", "b1", "b2", "b3", "b4"}, {"c0", "c1"}},
		WaveDone: map[int]int{0: 7}}
	for _, c := range []struct {
		node   string
		behind int
		push   bool
		want   int // × ActivePoll
	}{
		{"a3", 0, true, 1}, {"b0", 1, true, 1}, {"b2", 1, true, 1}, {"b3", 1, true, 6}, {"b4", 1, true, 6},
		{"c0", 2, true, 24}, {"z1", 0, true, 24}, {"b4", 1, false, 1}, {"c1", 2, false, 1}, {"z1", 0, false, 1},
	} {
		var sh Shared = noCount{}
		if c.push {
			sh = pushing{}
		}
		co, err := New(Options{Node: c.node, Shared: sh, ActivePoll: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got := co.activePoll(reconciler.Decision{Rollout: r, Behind: c.behind}); got != time.Duration(c.want)*time.Second {
			t.Errorf("%s, %d behind, store pushes %v: looks again after %s, want %ds", c.node, c.behind, c.push, got, c.want)
		}
	}
	// A node of a wave done is woken by no wave_done of the rollout.
	wf := &waveFocused{Shared: pushing{}, from: -1}
	co, err := New(Options{Node: "z1", Shared: wf, ActivePoll: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	co.focus("web", reconciler.Decision{Rollout: r})
	if wf.rollout != "r1" || wf.from != len(r.Waves) || wf.endOnly {
		t.Errorf("a node of a wave done focuses from wave %d of %q (end only %v), want %d of r1 (none)", wf.from, wf.rollout, wf.endOnly, len(r.Waves))
	}
	// Done itself, it waits for the rollout's end only; once the rollout
	// ended, for everything again.
	r.Done = map[string]string{"z1": "7"}
	co.focus("web", reconciler.Decision{Rollout: r})
	if wf.rollout != "r1" || !wf.endOnly {
		t.Errorf("a node done in a wave done focuses on %q, end only %v: want r1's end", wf.rollout, wf.endOnly)
	}
	r.Outcome = reconciler.OutcomeCompleted
	co.focus("web", reconciler.Decision{Rollout: r})
	if wf.endOnly || wf.from != 0 {
		t.Errorf("after the rollout's end: end only %v, from %d: want no focus", wf.endOnly, wf.from)
	}
}
