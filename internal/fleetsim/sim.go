// Package fleetsim is a deterministic simulation of a fleet: the real
// rollout coordinator (agent/rollout.Coordinator) and engine
// (reconciler.Decide) of N agents against an in-memory Store with the
// compare-and-swap semantics of the Git store, with simulated installs,
// switches and health checks, on the simulated clock of a testing/synctest
// bubble, driven by a seed. The seed chooses the fleet, the rollout options,
// the faults (crashes and restarts with local state kept or lost,
// partitions, writes whose answer is lost, refused writes, stopped agents
// past their lease, clock offsets, health failures, slow installs), the
// operators' acts mid-rollout (new targets, pause and resume, option
// changes, rollbacks) and late joiners and leavers, and the order in which
// goroutines woken at the same instant take their turns. Invariants are
// checked at every step (docs/testing.md).
//
// Run must be called inside a synctest bubble (synctest.Test), with Wait
// set to synctest.Wait.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// Scenarios name which faults and acts a seed may draw.
var Scenarios = []string{"calm", "faults", "operator", "chaos", "unreachable"}

// Config of one run.
type Config struct {
	Seed     uint64
	Scenario string // one of Scenarios
	// Wait is testing/synctest.Wait (Run needs a bubble).
	Wait func()
}

// Violation is a broken invariant.
type Violation struct {
	Kind   string        // see Kinds
	At     time.Duration // simulated time since the start
	Detail string
}

// Violation kinds.
const (
	KindBatch     = "batch"              // more than batchSize nodes switching
	KindTakeover  = "takeover"           // a node switched while its lease was held by another (or freed)
	KindExpired   = "expired"            // a node switched past the point an observer could expire its lease
	KindStale     = "stale-token"        // a node_done counted under a lease that was taken over
	KindConverged = "not-converged"      // at quiescence, a live node is off the tip or a rollout has no outcome
	KindRollback  = "rollback-commit"    // a rollback recorded with no commit
	KindLivelock  = "livelock"           // the turn budget ran out
	KindLowered   = "batch-lowered"      // batch, with a holder of a slot >= batchSize among the switching (bug 7)
	KindVerdict   = "unreachable-holder" // a node recorded unreachable while it held a live lease of the rollout (bug 2)
)

// maxTurns bounds one run (a calm rollout of 8 nodes takes about 2,000).
const maxTurns = 40000

// maxViolations recorded per run; the first ones tell the story.
const maxViolations = 20

func (v Violation) String() string {
	return fmt.Sprintf("%s at %s: %s", v.Kind, v.At.Round(time.Millisecond), v.Detail)
}

// Result of one run.
type Result struct {
	Seed       uint64
	Scenario   string
	Params     string
	Violations []Violation
	Grants     int      // turns the scheduler gave
	Log        []string // the last events, for a failing seed
	Store      string   // the store's content at the end
}

// params is what the seed chose for the fleet.
type params struct {
	nodes, late       int
	strategy          string
	batch             int
	rollbackOnFail    bool
	onUnreachable     string
	nodeTimeout       time.Duration
	batchDelay        time.Duration
	monitor           time.Duration
	ttl               time.Duration
	faults, operators bool
	leavers           bool
	unreachable       bool // only stops and partitions, often, with a short nodeTimeout
	healthFail        float64
}

func (p params) String() string {
	return fmt.Sprintf("nodes=%d(+%d late) %s batch=%d rollbackOnFail=%v onUnreachable=%s nodeTimeout=%s batchDelay=%s ttl=%s faults=%v operators=%v",
		p.nodes, p.late, p.strategy, p.batch, p.rollbackOnFail, p.onUnreachable, p.nodeTimeout, p.batchDelay, p.ttl, p.faults, p.operators)
}

const (
	appName    = "web"
	activePoll = 2 * time.Second
	poll       = 10 * time.Second
	faultPhase = 6 * time.Minute  // faults and operators act until then
	quiesceBy  = 25 * time.Minute // everything healed: the fleet must settle by then
)

type world struct {
	cfg   Config
	p     params
	rng   *rand.Rand
	s     *sched
	store *Store
	start time.Time
	wg    sync.WaitGroup

	// Under the gate.
	commitN    int
	commit     plumbing.Hash
	fleet      *spec.Fleet
	versions   []string // every version the operator committed, in order
	nodes      map[string]*node
	names      []string
	switching  map[string]*switchRec // node -> its switch in progress under a lease
	holdingB   map[string]int        // lease token of an acquisition -> batch in force then
	violations []Violation
	log        []string
	finished   bool
	healed     bool
	throttled  atomic.Bool // an agent was seen looping (bug 5): passes wait at least 1s
	lent       atomic.Bool // a turn is lent: store calls take none of their own (gated.lend)

	cmu       sync.Mutex
	commitIdx map[string]int // commit -> its place on the linear branch
}

// node is one machine: the agent process (incarnations) and its workload.
type node struct {
	name      string
	inc       int  // current agent incarnation
	alive     bool // the agent process runs
	gone      bool // left the fleet for good
	running   string
	previous  string
	failed    string
	offset    time.Duration // its clock's offset from true time
	partUntil time.Time
	stopUntil time.Time
	lossUntil time.Time
	refUntil  time.Time
	bad       map[string]bool // versions whose health check fails here
	quick     int             // passes in a row less than a second apart (its agent's)
}

type switchRec struct {
	node, to, token string
	slot            int
	start           time.Time
	inc             int
}

// Run simulates one seed and returns what it found.
func Run(cfg Config) Result {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	w := &world{cfg: cfg, rng: rng, store: NewStore(), start: time.Now(), nodes: map[string]*node{},
		switching: map[string]*switchRec{}, holdingB: map[string]int{}, commitIdx: map[string]int{}}
	w.s = newSched(cfg.Wait, rng)
	w.p = w.drawParams()
	w.store.onWrite = w.onWrite
	w.s.blocked = w.blocked
	w.initFleet()
	for i, name := range w.names {
		n := w.nodes[name]
		if i < w.p.nodes {
			w.startAgent(n)
			continue
		}
		after := time.Duration(10+w.rng.IntN(300)) * time.Second // a late joiner
		w.wg.Go(func() {
			time.Sleep(after)
			if w.turn("~join/"+name) != nil {
				return
			}
			defer w.s.leave()
			if !n.alive && !n.gone && n.inc == 0 {
				w.logf("%s joins late", name)
				w.startAgent(n)
			}
		})
	}
	// Each background actor draws its pauses from its own generator
	// (seeded from the run's): they are drawn outside any turn.
	opRng, chaosRng := rand.New(rand.NewPCG(rng.Uint64(), 1)), rand.New(rand.NewPCG(rng.Uint64(), 2))
	w.wg.Go(func() { w.operator(opRng) })
	if w.p.faults {
		w.wg.Go(func() { w.chaos(chaosRng) })
	}
	w.wg.Go(w.judge)
	var instant time.Time
	var atInstant int
	w.s.run(w.start.Add(quiesceBy), time.Second, func() bool {
		if now := time.Now(); now.Equal(instant) {
			atInstant++
		} else {
			instant, atInstant = now, 0
		}
		if atInstant >= 3000 && !w.finished {
			w.violate(KindLivelock, "3000 turns at one instant (the last: %s): something retries without waiting", lastLine(w.log))
			w.finished = true
		}
		if w.s.grants >= maxTurns && !w.finished {
			w.violate(KindLivelock, "%d turns and the fleet has not settled", w.s.grants)
			w.finished = true
		}
		return w.finished
	})
	w.s.stop()
	w.wg.Wait()
	res := Result{Seed: cfg.Seed, Scenario: cfg.Scenario, Params: w.p.String(), Violations: w.violations,
		Grants: w.s.grants, Log: w.log, Store: w.store.dump()}
	return res
}

func (w *world) drawParams() params {
	r := w.rng
	p := params{nodes: 3 + r.IntN(5), strategy: spec.StrategyRolling, batch: 1 + r.IntN(3),
		rollbackOnFail: r.IntN(2) == 0, onUnreachable: spec.OnUnreachableSkip,
		nodeTimeout: time.Duration(45+r.IntN(120)) * time.Second,
		batchDelay:  time.Duration(r.IntN(5000)) * time.Millisecond,
		monitor:     time.Duration(5+r.IntN(20)) * time.Second, ttl: 30 * time.Second}
	if r.IntN(3) == 0 {
		p.strategy = spec.StrategyCanary
	}
	if r.IntN(4) == 0 {
		p.onUnreachable = spec.OnUnreachableFail
	}
	switch w.cfg.Scenario {
	case "calm":
	case "faults":
		p.faults, p.healthFail = true, 0.05
	case "operator":
		p.operators, p.late, p.leavers = true, r.IntN(3), true
	case "unreachable": // nodes that come back right at nodeTimeout (issue 17 bug 2)
		p.faults, p.unreachable, p.onUnreachable = true, true, spec.OnUnreachableSkip
		p.nodeTimeout = time.Duration(30+r.IntN(25)) * time.Second
	default: // chaos
		p.faults, p.operators, p.late, p.leavers, p.healthFail = true, true, r.IntN(3), true, 0.05
	}
	return p
}

func (w *world) initFleet() {
	for i := range w.p.nodes + w.p.late {
		name := fmt.Sprintf("n%d", i+1)
		w.names = append(w.names, name)
		w.nodes[name] = &node{name: name, running: "1.0.0", bad: map[string]bool{}}
	}
	app := spec.App{Name: appName, Version: "1.0.0",
		Artifact: spec.Artifact{URL: "https://releases.invalid/web.tar.gz"},
		Rollout: spec.Rollout{Strategy: w.p.strategy, BatchSize: w.p.batch,
			BatchDelay:     spec.Duration{Duration: w.p.batchDelay},
			NodeTimeout:    spec.Duration{Duration: w.p.nodeTimeout},
			RollbackOnFail: w.p.rollbackOnFail, OnUnreachable: w.p.onUnreachable,
			Canary: spec.Canary{Count: 1, Monitor: spec.Duration{Duration: w.p.monitor}}},
		Health: spec.Health{HTTP: "http://127.0.0.1:8080/healthz", Retries: 1, RetryDelay: spec.Duration{Duration: time.Second}},
		Nodes:  spec.Targets{All: true}}
	w.versions = []string{"1.0.0"}
	w.setTip(app)
}

// setTip commits app as the new tip of the tracked branch. Under the gate.
func (w *world) setTip(app spec.App) {
	w.commitN++
	w.commit = plumbing.NewHash(fmt.Sprintf("%040x", 0xc0ffee0000+w.commitN))
	w.cmu.Lock()
	w.commitIdx[w.commit.String()] = w.commitN
	w.cmu.Unlock()
	w.fleet = &spec.Fleet{Apps: map[string]spec.App{appName: app}}
	w.logf("tip %.8s: %s %s batch=%d paused=%v", w.commit, appName, app.Version, app.Rollout.BatchSize, app.Paused)
}

func (w *world) app() spec.App { return w.fleet.Apps[appName] }

func (w *world) now() time.Duration { return time.Since(w.start) }

func (w *world) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf("%9s ", w.now().Round(time.Millisecond))+fmt.Sprintf(format, args...))
	if len(w.log) > 400 {
		w.log = slices.Clone(w.log[len(w.log)-300:])
	}
}

func (w *world) violate(kind, format string, args ...any) {
	v := Violation{Kind: kind, At: w.now(), Detail: fmt.Sprintf(format, args...)}
	if len(w.violations) >= maxViolations {
		return
	}
	w.violations = append(w.violations, v)
	w.logf("VIOLATION %s", v)
}

// blocked: a stopped node's goroutines wait (SIGSTOP: its clock runs on).
func (w *world) blocked(key string) bool {
	name, _, _ := strings.Cut(key, "/")
	n := w.nodes[name]
	return n != nil && time.Now().Before(n.stopUntil)
}

// turn waits for the gate; leave with w.s.leave.
func (w *world) turn(key string) error { return w.s.enter(key) }

// --- agents ---

var errDead = errors.New("agent process killed (simulated)")

func (w *world) startAgent(n *node) {
	n.inc++
	n.alive = true
	if w.p.faults && w.rng.IntN(3) == 0 {
		n.offset = time.Duration(w.rng.IntN(7200)-3600) * time.Second // wall-clock skew; expiry must not care
	}
	inc := n.inc
	seed := w.rng.Uint64()
	w.logf("%s: agent starts (incarnation %d, running %s, failed %q, clock offset %s)", n.name, inc, n.running, n.failed, n.offset)
	w.wg.Go(func() { w.agent(n, inc, rand.New(rand.NewPCG(seed, 3))) })
}

// gated is a node incarnation's rollout.Shared: each call takes a turn and
// meets that node's network.
type gated struct {
	lat    *rand.Rand // request latency, drawn by the agent's goroutine only
	w      *world
	n      *node
	inc    int
	h      *Handle
	timers atomic.Int64
}

func (g *gated) enter(op string) error {
	if g.lat != nil && !strings.HasPrefix(op, "renew") && !g.w.lent.Load() {
		// The request travels: its effect lands 20-300 ms after the call
		// (only the agent's own goroutine draws these).
		time.Sleep(time.Duration(20+g.lat.IntN(280)) * time.Millisecond)
	}
	if g.w.lent.Load() { // inside a turn lent to the coordinator's lease goroutine or Begin/Finish
		if g.n.inc != g.inc || !g.n.alive {
			return errDead
		}
		return nil
	}
	if err := g.w.turn(fmt.Sprintf("%s/%d/%s", g.n.name, g.inc, op)); err != nil {
		return err
	}
	if g.n.inc != g.inc || !g.n.alive {
		g.w.s.leave()
		return errDead
	}
	return nil
}

// leave ends the turn enter took (none inside a lent turn).
func (g *gated) leave() {
	if !g.w.lent.Load() {
		g.w.s.leave()
	}
}

// lend runs fn inside one turn in which the node's store calls take no
// turns of their own: rollout's lease object renews while holding its
// mutex, so Begin, Finish and the renewal goroutine's wake-ups must each
// run whole, alone (a goroutine blocked on a mutex would keep
// synctest.Wait from returning).
func (g *gated) lend(what string, fn func()) error {
	if err := g.w.turn(fmt.Sprintf("%s/%d/%s", g.n.name, g.inc, what)); err != nil {
		return err
	}
	g.w.lent.Store(true)
	fn()
	g.w.cfg.Wait() // what fn woke (the lease goroutine) settles inside the turn
	g.w.lent.Store(false)
	g.w.s.leave()
	return nil
}

// after is rollout.Options.After: the lease goroutine's timer fires inside
// a lent turn, so its renewal runs alone and in an order the seed chose.
func (g *gated) after(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	what := fmt.Sprintf("timer#%06d", g.timers.Add(1)) // a stale timer and a fresh one may fire together
	g.w.wg.Go(func() {
		time.Sleep(d)
		_ = g.lend(what, func() { c <- time.Now() })
	})
	return c
}

func (g *gated) fault(op string, write bool) Fault {
	now := time.Now()
	switch n := g.n; {
	case now.Before(n.partUntil):
		return Unreachable
	case write && now.Before(n.refUntil):
		return Refused
	case write && now.Before(n.lossUntil) && g.w.rng.IntN(2) == 0:
		g.w.logf("%s: the answer to %q is lost", n.name, op)
		return LostAnswer
	}
	return Deliver
}

func (g *gated) Reports(ctx context.Context) (map[string]reconciler.NodeReport, error) {
	if err := g.enter("reports"); err != nil {
		return nil, err
	}
	defer g.leave()
	return g.h.Reports(ctx)
}

func (g *gated) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	if err := g.enter("record"); err != nil {
		return nil, err
	}
	defer g.leave()
	return g.h.Record(ctx, app)
}

func (g *gated) Append(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	if err := g.enter("append"); err != nil {
		return err
	}
	defer g.leave()
	return g.h.Append(ctx, app, decide)
}

func (g *gated) AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	if err := g.enter("append"); err != nil {
		return err
	}
	defer g.leave()
	return g.h.AppendGuarded(ctx, app, guard, decide)
}

func (g *gated) Leases(ctx context.Context, app string) ([]reconciler.Lease, error) {
	if err := g.enter("leases"); err != nil {
		return nil, err
	}
	defer g.leave()
	return g.h.Leases(ctx, app)
}

func (g *gated) Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error) {
	if err := g.enter(fmt.Sprintf("acquire %d", slot)); err != nil {
		return reconciler.Lease{}, err
	}
	defer g.leave()
	l, err := g.h.Acquire(ctx, app, slot, holder, rollout, ttl)
	g.w.logf("%s: acquire %s/%d -> %.4s %v", holder, app, slot, tail(l.Token), err)
	return l, err
}

func (g *gated) Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error) {
	if err := g.enter(fmt.Sprintf("renew %d", l.Slot)); err != nil {
		return l, err
	}
	defer g.leave()
	nl, err := g.h.Renew(ctx, l)
	g.w.logf("%s: renew %s/%d %.4s -> %.4s %v", l.Holder, l.App, l.Slot, tail(l.Token), tail(nl.Token), err)
	return nl, err
}

func (g *gated) Release(ctx context.Context, l reconciler.Lease) error {
	if err := g.enter(fmt.Sprintf("release %d", l.Slot)); err != nil {
		return err
	}
	defer g.leave()
	err := g.h.Release(ctx, l)
	g.w.logf("%s: release %s/%d %.4s %v", l.Holder, l.App, l.Slot, tail(l.Token), err)
	return err
}

// Validity is the handle's (no turn: it reads only this agent's memory).
func (g *gated) Validity(l reconciler.Lease) time.Duration { return g.h.Validity(l) }

func (g *gated) WriteReport(ctx context.Context, r reconciler.NodeReport) error {
	if err := g.enter("report"); err != nil {
		return err
	}
	defer g.leave()
	return g.h.WriteReport(ctx, r)
}

func tail(tok string) string {
	if len(tok) > 4 {
		return tok[len(tok)-4:]
	}
	return tok
}

// agent is one incarnation of a node's agent: passes like agent.Agent's
// (read the tip, ask the coordinator for a permit, converge, finish the
// lease, report), until it is killed or the simulation ends.
func (w *world) agent(n *node, inc int, jitter *rand.Rand) {
	ctx := context.Background()
	nowFn := func() time.Time { return time.Now().Add(n.offset) }
	g := &gated{w: w, n: n, inc: inc, lat: rand.New(rand.NewPCG(jitter.Uint64(), 4))}
	g.h = w.store.Handle(n.name, nowFn, g.fault)
	coord, err := rollout.New(rollout.Options{Node: n.name, Shared: g, LeaseTTL: w.p.ttl, ActivePoll: activePoll,
		Logger: slog.New(slog.DiscardHandler), Clock: simClock{now: nowFn, after: g.after}, Rollback: w.rollbackFunc(g),
		Descends: w.descends})
	if err != nil {
		panic(err)
	}
	key := fmt.Sprintf("%s/%d/pass", n.name, inc)
	errs := 0
	for {
		if err := w.turn(key); err != nil {
			return
		}
		if n.inc != inc || !n.alive {
			w.s.leave()
			return
		}
		commit, fleet, app := w.commit, w.fleet, w.app()
		local := agent.Local{Active: n.running, Previous: n.previous, Failed: n.failed}
		w.s.leave()
		p, perr := coord.Permit(ctx, agent.DecideInput{Node: n.name, Commit: commit, Fleet: fleet, App: app, Local: local})
		rep := reconciler.AppReport{Version: local.Active, Previous: local.Previous, State: reconciler.AppHealthy, Rollout: p.Rollout}
		var cerr error
		switch {
		case perr != nil:
			rep.Error = perr.Error()
		case p.Version != "":
			rep, cerr = w.converge(ctx, g, app, p)
			if p.Lease != nil {
				// Finish runs whatever happened (a killed agent's writes fail).
				if g.lend("finish", func() { p.Lease.Finish(ctx, rep, cerr) }) != nil {
					p.Lease.Finish(ctx, rep, errStopped) // the run is over: stop its goroutine
				}
			}
		case p.Blocked != "":
			rep.State, rep.Target, rep.Error = reconciler.AppBlocked, app.Version, p.Blocked
		case p.Waiting != "":
			rep.State, rep.Target, rep.Error = reconciler.AppWaiting, app.Version, p.Waiting
		}
		if local.Failed != "" && local.Failed == app.Version && rep.State == reconciler.AppHealthy {
			rep.State, rep.Target = reconciler.AppFailed, local.Failed
		}
		if errors.Is(cerr, errDead) || errors.Is(cerr, errStopped) {
			return
		}
		_ = g.WriteReport(ctx, reconciler.NodeReport{Node: n.name, SpecCommit: commit.String(), Time: nowFn(),
			Apps: map[string]reconciler.AppReport{appName: rep}})
		wait := poll
		if !p.Recheck.IsZero() {
			wait = min(max(p.Recheck.Sub(nowFn()), 10*time.Millisecond), poll) // as agent.untilRecheck
		}
		if perr != nil {
			// rollout jitters its retry with the global generator: the
			// simulation draws the same range, [d/2, d) of a doubling d,
			// from the seed instead.
			errs++
			d := min(time.Second<<min(errs-1, 5), 30*time.Second)
			wait = min(d/2+time.Duration(jitter.Int64N(int64(d/2))), poll)
		} else {
			errs = 0
		}
		if w.looping(n, wait) {
			wait = max(wait, time.Second)
		}
		time.Sleep(wait)
	}
}

// descends is rollout.Options.Descends: the simulated branch is linear.
func (w *world) descends(tip, ancestor string) bool {
	w.cmu.Lock()
	defer w.cmu.Unlock()
	a, ok := w.commitIdx[ancestor]
	return ok && w.commitIdx[tip] >= a
}

// looping notices an agent that passes without waiting, over and over
// (issue 17 bug 5: a failed node loops on leases after the rollout
// completed, rechecking every 10ms). It is reported once; from then on the
// simulation gives every pass of that seed at least a second, so the run
// stays short and can still find other bugs. Called by n's agent only.
func (w *world) looping(n *node, wait time.Duration) bool {
	if wait >= time.Second {
		n.quick = 0
		return false
	}
	n.quick++
	if n.quick == 500 && !w.throttled.Load() {
		if w.turn("~"+n.name+"/looping") == nil {
			w.throttled.Store(true)
			w.violate(KindLivelock, "%s made 500 passes in a row less than a second apart (issue 17 bug 5: a failed node loops on leases after the rollout completed)", n.name)
			w.s.leave()
		}
	}
	return w.throttled.Load()
}

// switchAbort is what giving a candidate up takes at most (agent's
// SwitchAbort default, a quarter of the lease TTL, at most 5s).
const switchAbort = 5 * time.Second

// converge is the simulated agent.Converge: install, Begin the lease (the
// point of no return), switch with the health check under the lease's
// context (given up, old version kept, when it ends), record the outcome.
func (w *world) converge(ctx context.Context, g *gated, app spec.App, p agent.Permit) (reconciler.AppReport, error) {
	n, inc := g.n, g.inc
	key := fmt.Sprintf("%s/%d/converge", n.name, inc)
	step := func() error {
		if err := w.turn(key); err != nil {
			return err
		}
		if n.inc != inc || !n.alive {
			w.s.leave()
			return errDead
		}
		return nil
	}
	v := p.Version
	rep := reconciler.AppReport{Version: n.running, Previous: n.previous, Rollout: p.Rollout}
	if err := step(); err != nil {
		return rep, err
	}
	switch {
	case n.running == v:
		w.s.leave()
		rep.State = reconciler.AppHealthy
		return rep, nil
	case n.failed == v:
		w.s.leave()
		rep.State, rep.Target, rep.Error = reconciler.AppFailed, v, "remembered failure"
		return rep, nil
	}
	install := time.Duration(500+w.rng.IntN(6000)) * time.Millisecond
	if (w.p.faults || w.p.operators) && w.rng.IntN(6) == 0 {
		install = time.Duration(20+w.rng.IntN(70)) * time.Second // a slow download
	}
	w.logf("%s: installing %s (%s)", n.name, v, install)
	w.s.leave()
	time.Sleep(install)

	sctx := ctx
	var berr, dead error
	var sw, hc, abort time.Duration
	var healthy bool
	begin := func() {
		if n.inc != inc || !n.alive {
			dead = errDead
			return
		}
		token := ""
		if p.Lease != nil {
			if sctx, berr = p.Lease.Begin(ctx, switchAbort); berr != nil {
				w.logf("%s: switch to %s not begun: %v", n.name, v, berr)
				return
			}
			token = p.Lease.Token()
		}
		sw = time.Duration(300+w.rng.IntN(2500)) * time.Millisecond
		hc = time.Duration(200+w.rng.IntN(4000)) * time.Millisecond
		abort = time.Duration(100+w.rng.IntN(int(switchAbort/time.Millisecond)-100)) * time.Millisecond
		healthy = !n.bad[v] && w.rng.Float64() >= w.p.healthFail
		if !healthy {
			n.bad[v] = true
		}
		w.switchBegins(n, inc, v, token)
	}
	if err := g.lend("begin", begin); err != nil {
		return rep, err
	}
	if dead != nil {
		return rep, dead
	}
	if berr != nil {
		rep.State, rep.Target, rep.Error = reconciler.AppWaiting, v, berr.Error()
		return rep, berr
	}
	given := false
	end := time.Now().Add(sw + hc)
	t := time.NewTimer(sw + hc)
	select {
	case <-t.C:
	case <-sctx.Done():
		t.Stop()
		if time.Now().Before(end) { // (both at once: the switch finished)
			given = true
			time.Sleep(abort) // the candidate is given up, the old version kept
		}
	}

	if err := step(); err != nil {
		return rep, err
	}
	defer w.s.leave()
	if given {
		w.switchEnds(n, "given up")
		w.logf("%s: switch to %s given up (lease validity ran out); %s kept", n.name, v, n.running)
		rep.State, rep.Target, rep.Error = reconciler.AppFailed, v, "switch interrupted"
		return rep, fmt.Errorf("switch %s to %s on %s: %w", appName, v, n.name, context.Canceled)
	}
	w.switchEnds(n, "done")
	if w.p.unreachable && w.rng.IntN(4) == 0 {
		// Stopped once the switch is over and before its outcome is
		// recorded: the window the fence covers (Finish renews before it
		// records; bug 2's second half).
		n.stopUntil = time.Now().Add(time.Duration(10000+w.rng.IntN(80000)) * time.Millisecond)
		w.logf("%s: agent stopped (SIGSTOP) after its switch, before recording it, until +%s", n.name, n.stopUntil.Sub(w.start).Round(time.Millisecond))
	}
	if !healthy {
		n.failed = v
		w.logf("%s: %s failed its health check; %s kept", n.name, v, n.running)
		rep.State, rep.Target, rep.Error = reconciler.AppFailed, v, "health check failed (simulated)"
		return rep, fmt.Errorf("switch %s to %s on %s: health check failed (simulated)", appName, v, n.name)
	}
	n.previous, n.running, n.failed = n.running, v, ""
	w.logf("%s: now runs %s", n.name, v)
	rep.Version, rep.Previous, rep.State = n.running, n.previous, reconciler.AppHealthy
	return rep, nil
}

// rollbackFunc writes the rollback commit: restore req.To while the tip
// still targets req.Failed.
func (w *world) rollbackFunc(g *gated) rollout.RollbackFunc {
	return func(ctx context.Context, req fleetrepo.RollbackRequest) (string, error) {
		if err := g.enter("rollback"); err != nil {
			return "", err
		}
		defer g.leave()
		if g.fault("push main", true) != Deliver {
			return "", &fleetrepo.TransientError{Op: "push main to", Repo: repoName, Err: errors.New("simulated")}
		}
		app := w.app()
		if app.Version != req.Version {
			return "", rollout.ErrNoRollback
		}
		app.Version = req.To
		w.logf("%s: rollback commit %s -> %s", g.n.name, req.Version, req.To)
		w.setTip(app)
		return w.commit.String(), nil
	}
}

// --- operators and faults ---

// operator commits the first new target early, then (operators scenario)
// acts at random until the fault phase ends.
func (w *world) operator(r *rand.Rand) {
	time.Sleep(time.Duration(3000+r.IntN(15000)) * time.Millisecond)
	if w.turn("~operator") != nil {
		return
	}
	w.bump()
	w.s.leave()
	if !w.p.operators {
		return
	}
	for {
		time.Sleep(time.Duration(5+r.IntN(60)) * time.Second)
		if w.turn("~operator") != nil {
			return
		}
		if w.now() >= faultPhase {
			app := w.app()
			if app.Paused { // operators leave nothing paused
				app.Paused = false
				w.setTip(app)
			}
			w.s.leave()
			return
		}
		w.operatorAct()
		w.s.leave()
	}
}

// bump commits the next version.
func (w *world) bump() {
	app := w.app()
	app.Version = fmt.Sprintf("1.%d.0", len(w.versions))
	w.versions = append(w.versions, app.Version)
	w.setTip(app)
}

func (w *world) operatorAct() {
	app := w.app()
	switch w.rng.IntN(6) {
	case 0, 1:
		w.logf("operator: new target")
		w.bump()
		return
	case 2:
		app.Paused = !app.Paused
		w.logf("operator: paused=%v", app.Paused)
	case 3:
		app.Rollout.BatchSize = 1 + w.rng.IntN(3)
		if w.rng.IntN(2) == 0 {
			app.Rollout.BatchSize = max(1, app.Rollout.BatchSize-2) // mostly lower it
		}
		w.logf("operator: batchSize=%d", app.Rollout.BatchSize)
	case 4:
		app.Rollout.BatchDelay.Duration = time.Duration(w.rng.IntN(5000)) * time.Millisecond
		w.logf("operator: batchDelay=%s", app.Rollout.BatchDelay)
	case 5:
		if len(w.versions) > 1 {
			prev := w.versions[max(0, slices.Index(w.versions, app.Version)-1)]
			w.logf("operator: rolls back to %s", prev)
			app.Version = prev
		}
	}
	w.setTip(app)
}

// chaos injects faults until the fault phase ends, then heals everything.
func (w *world) chaos(r *rand.Rand) {
	for {
		if w.p.unreachable {
			time.Sleep(time.Duration(1000+r.IntN(9000)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(2000+r.IntN(30000)) * time.Millisecond)
		}
		if w.turn("~chaos") != nil {
			return
		}
		if w.now() >= faultPhase {
			w.heal()
			w.s.leave()
			return
		}
		w.fault()
		w.s.leave()
	}
}

func (w *world) liveNames() []string {
	var out []string
	for _, name := range w.names {
		if n := w.nodes[name]; n.alive && !n.gone {
			out = append(out, name)
		}
	}
	return out
}

func (w *world) fault() {
	live := w.liveNames()
	if len(live) == 0 {
		return
	}
	n := w.nodes[live[w.rng.IntN(len(live))]]
	now := time.Now()
	span := func(lo, hi int) time.Time {
		return now.Add(time.Duration(lo*1000+w.rng.IntN((hi-lo)*1000)) * time.Millisecond)
	}
	kind := w.rng.IntN(7)
	if w.p.unreachable {
		kind = 1 + w.rng.IntN(2) // cut off or stopped
	}
	switch kind {
	case 0:
		keep := w.rng.IntN(3) != 0
		w.kill(n, keep)
		if w.p.leavers && len(live) > 2 && w.rng.IntN(6) == 0 {
			n.gone = true
			w.logf("%s leaves the fleet", n.name)
			return
		}
		delay := time.Duration(1000+w.rng.IntN(60000)) * time.Millisecond
		w.wg.Go(func() { w.restartAfter(n, delay) })
	case 1:
		n.partUntil = span(5, 90)
		w.logf("%s: cut off from the store until +%s", n.name, n.partUntil.Sub(w.start).Round(time.Millisecond))
	case 2:
		if w.switching[n.name] != nil {
			return // frozen past its point of no return: no lease can cover that (docs/testing.md)
		}
		n.stopUntil = span(10, 90)
		w.logf("%s: agent stopped (SIGSTOP) until +%s", n.name, n.stopUntil.Sub(w.start).Round(time.Millisecond))
	case 3:
		n.lossUntil = span(10, 60)
		w.logf("%s: answers to writes lost until +%s", n.name, n.lossUntil.Sub(w.start).Round(time.Millisecond))
	case 4:
		n.refUntil = span(5, 40)
		w.logf("%s: writes refused until +%s", n.name, n.refUntil.Sub(w.start).Round(time.Millisecond))
	case 5:
		v := w.app().Version
		n.bad[v] = true
		w.logf("%s: %s will fail its health check here", n.name, v)
	case 6:
		for _, name := range w.names { // a late joiner arrives
			if m := w.nodes[name]; !m.alive && !m.gone && m.inc == 0 {
				w.startAgent(m)
				return
			}
		}
	}
}

// kill stops n's agent process; its workload keeps running (a switch in
// flight ends on the old or the new version).
func (w *world) kill(n *node, keepState bool) {
	n.alive = false
	if sw := w.switching[n.name]; sw != nil {
		w.switchEnds(n, "killed")
		if w.rng.IntN(2) == 0 {
			n.previous, n.running = n.running, sw.to
		}
	}
	if !keepState {
		n.previous, n.failed = "", ""
	}
	w.logf("%s: agent killed (local state kept: %v), workload runs %s", n.name, keepState, n.running)
}

func (w *world) restartAfter(n *node, d time.Duration) {
	time.Sleep(d)
	if w.turn("~restart/"+n.name) != nil {
		return
	}
	defer w.s.leave()
	if !n.alive && !n.gone {
		w.startAgent(n)
	}
}

// heal ends every fault; late joiners that never came start now.
func (w *world) heal() {
	w.healed = true
	for _, name := range w.names {
		n := w.nodes[name]
		n.partUntil, n.stopUntil, n.lossUntil, n.refUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !n.alive && !n.gone && n.inc == 0 {
			w.startAgent(n)
		}
	}
	w.logf("all faults healed")
}

// --- invariants ---

func (w *world) recordedBatch() int {
	w.store.mu.Lock()
	defer w.store.mu.Unlock()
	b := w.app().Rollout.BatchSize
	if r := reconciler.Latest(w.store.records[appName]); r != nil {
		b = max(b, r.Options.BatchSize)
	}
	return b
}

// onWrite checks each write that lands (under the store's lock).
func (w *world) onWrite(sw storeWrite) {
	switch sw.kind {
	case "lease":
		if sw.lease.Holder != "" && (sw.prev.Holder != sw.lease.Holder || !sw.prev.Acquired.Equal(sw.lease.Acquired)) {
			// A new holding: remember the batch size recorded when it began.
			// The larger of the tip's and the recorded: late joiners after
			// a rollout ended follow the tip, whose options no event records.
			b := w.app().Rollout.BatchSize
			if r := reconciler.Latest(w.store.records[appName]); r != nil {
				b = max(b, r.Options.BatchSize)
			}
			w.holdingB[sw.lease.Token] = b
			for _, rec := range w.switching { // taking a slot from a node mid-switch
				if rec.slot == sw.lease.Slot && rec.node != sw.lease.Holder {
					w.violate(KindTakeover, "%s takes slot %d while %s is switching to %s under it (bug 1)",
						sw.lease.Holder, sw.lease.Slot, rec.node, rec.to)
				}
			}
		}
	case "event":
		ev := sw.event
		if ev.Type == reconciler.EventRolledBack && ev.RollbackCommit == "" {
			w.violate(KindRollback, "%s recorded rolled_back of %s with no rollback commit", ev.By, ev.Rollout)
		}
		if ev.Type == reconciler.EventNodeUnreachable {
			if slot, ok := w.holdsLive(ev.Node, ev.Rollout); ok {
				w.violate(KindVerdict, "%s recorded %s unreachable for taking no lease while it held slot %d of the rollout, written less than a TTL ago (bug 2)",
					ev.By, ev.Node, slot)
			}
		}
		if ev.Type != reconciler.EventNodeDone || ev.Lease == "" || ev.Node != sw.by {
			return
		}
		r := reconciler.Latest(sw.record)
		if r == nil || r.ID != ev.Rollout || r.Done[ev.Node] != ev.Lease {
			return // not counted
		}
		if by, ok := w.takenOver(ev.Lease); ok {
			w.violate(KindStale, "%s's node_done counted under lease %.4s, which %s took over (bug 2)", ev.Node, tail(ev.Lease), by)
		}
	}
}

// holdsLive reports whether node holds a slot of rollout whose last write
// landed less than a TTL ago in true time: no observer can have expired it.
// Caller holds the store's lock.
func (w *world) holdsLive(node, rollout string) (int, bool) {
	for k, ws := range w.store.leases {
		if len(ws) == 0 {
			continue
		}
		last := ws[len(ws)-1]
		if last.doc.Holder == node && last.doc.Rollout == rollout && time.Since(last.global) < w.p.ttl {
			return k.slot, true
		}
	}
	return 0, false
}

// takenOver reports whether the holding that token belongs to was followed
// by another holder on its slot. Caller holds the store's lock.
func (w *world) takenOver(token string) (string, bool) {
	for _, ws := range w.store.leases {
		for i, x := range ws {
			if x.token != token {
				continue
			}
			for _, y := range ws[i+1:] {
				if y.doc.Holder != "" && (y.doc.Holder != x.doc.Holder || !y.doc.Acquired.Equal(x.doc.Acquired)) {
					return y.doc.Holder, true
				}
			}
			return "", false
		}
	}
	return "", false
}

// holdingOf finds the write with token: its slot and writes. Caller holds the store's lock.
func (w *world) holdingOf(token string) (slotKey, []leaseWrite, int, bool) {
	for k, ws := range w.store.leases {
		for i, x := range ws {
			if x.token == token {
				return k, ws, i, true
			}
		}
	}
	return slotKey{}, nil, 0, false
}

// switchBegins checks a switch under a lease as it starts. Under the gate.
func (w *world) switchBegins(n *node, inc int, to, token string) {
	if token == "" {
		w.logf("%s: switching to %s without a lease (a rollback)", n.name, to)
		return
	}
	w.store.mu.Lock()
	k, ws, i, ok := w.holdingOf(token)
	var acquiredTok string
	if ok {
		for j := i; j >= 0; j-- { // the acquisition of this holding
			if ws[j].doc.Holder != ws[i].doc.Holder || !ws[j].doc.Acquired.Equal(ws[i].doc.Acquired) {
				break
			}
			acquiredTok = ws[j].token
		}
	}
	w.store.mu.Unlock()
	if !ok {
		w.violate(KindTakeover, "%s switches to %s under lease %.4s that was never written", n.name, to, tail(token))
		return
	}
	// The batch size in force: the larger of the one when this node's
	// lease was taken (nodes already switching when it is lowered go on)
	// and the one now (raising it lets more go at once).
	b := max(w.holdingB[acquiredTok], w.recordedBatch())
	others, kind := 0, KindBatch
	var who []string
	for _, rec := range w.switching {
		if rec.node != n.name {
			others++
			who = append(who, fmt.Sprintf("%s@slot%d", rec.node, rec.slot))
			if rec.slot >= b {
				kind = KindLowered
			}
		}
	}
	if others >= b {
		slices.Sort(who)
		w.violate(kind, "%s starts switching to %s on slot %d while %d others switch (%s), batchSize %d",
			n.name, to, k.slot, others, strings.Join(who, ", "), b)
	}
	w.switching[n.name] = &switchRec{node: n.name, to: to, token: token, slot: k.slot, start: time.Now(), inc: inc}
	w.logf("%s: switch to %s begins under lease %.4s slot %d", n.name, to, tail(token), k.slot)
	w.checkCover(n.name, w.switching[n.name], time.Now(), "begins")
}

// switchEnds checks the lease covered the whole switch. Under the gate.
func (w *world) switchEnds(n *node, how string) {
	rec := w.switching[n.name]
	if rec == nil {
		return
	}
	delete(w.switching, n.name)
	w.checkCover(n.name, rec, time.Now(), how)
}

// checkCover: from the switch's start to end, the node's holding of the
// slot was the slot's current value and renewed (in true time) less than a
// TTL apart: no observer could have seen it expire.
func (w *world) checkCover(name string, rec *switchRec, end time.Time, how string) {
	w.store.mu.Lock()
	defer w.store.mu.Unlock()
	k, ws, i, ok := w.holdingOf(rec.token)
	if !ok {
		return
	}
	h := ws[i].doc
	last := ws[i].global
	for _, x := range ws[i+1:] {
		if x.global.After(end) {
			break
		}
		if x.doc.Holder != h.Holder || !x.doc.Acquired.Equal(h.Acquired) {
			if gap := x.global.Sub(last); gap >= h.TTL && x.global.After(rec.start) {
				w.violate(KindExpired, "%s switching to %s: lease %s/%d went %s unrenewed (TTL %s) before %s took it (bug 1)",
					name, rec.to, k.app, k.slot, gap.Round(time.Millisecond), h.TTL, orFree(x.doc.Holder))
			}
			if x.global.Before(end) || how == "begins" {
				w.violate(KindTakeover, "%s's switch to %s (%s) under slot %d overlaps %s (bug 1)",
					name, rec.to, how, k.slot, orFree(x.doc.Holder))
			}
			return
		}
		if x.global.After(rec.start) && x.global.Sub(last) >= h.TTL {
			w.violate(KindExpired, "%s switching to %s: lease %s/%d went %s unrenewed (TTL %s) mid-switch (bug 1)",
				name, rec.to, k.app, k.slot, x.global.Sub(last).Round(time.Millisecond), h.TTL)
			return
		}
		last = x.global
	}
	if end.Sub(last) >= h.TTL {
		w.violate(KindExpired, "%s switching to %s (%s): lease %s/%d unrenewed for %s (TTL %s): an observer may have expired it (bug 1)",
			name, rec.to, how, k.app, k.slot, end.Sub(last).Round(time.Millisecond), h.TTL)
	}
}

func lastLine(log []string) string {
	if len(log) == 0 {
		return ""
	}
	return strings.TrimSpace(log[len(log)-1])
}

func orFree(h string) string {
	if h == "" {
		return "its release"
	}
	return h
}

// judge, once faults are healed, checks every 20s whether the fleet has
// settled, and at the end says what did not.
func (w *world) judge() {
	for {
		time.Sleep(20 * time.Second)
		if w.turn("~judge") != nil {
			return
		}
		end := w.now() >= quiesceBy-30*time.Second
		if w.now() >= faultPhase && (!w.p.faults || w.healed) {
			if problems := w.unsettled(); len(problems) == 0 {
				w.finished = true
			} else if end {
				for _, p := range problems {
					w.violate(KindConverged, "%s", p)
				}
				w.finished = true
			}
		}
		w.s.leave()
		if w.finished {
			return
		}
	}
}

// unsettled lists what keeps the fleet from quiescence.
func (w *world) unsettled() []string {
	w.store.mu.Lock()
	r := reconciler.Latest(w.store.records[appName])
	w.store.mu.Unlock()
	v := w.app().Version
	var out []string
	if r == nil {
		return []string{"no rollout recorded"}
	}
	if !r.Ended() && r.Target == v {
		out = append(out, fmt.Sprintf("rollout %.8s of %s has no outcome", r.ID, r.Target))
	}
	failedRollout := r.Target == v && r.Outcome == reconciler.OutcomeFailed
	for _, name := range slices.Sorted(maps.Keys(w.nodes)) {
		n := w.nodes[name]
		_, recordedFailed := r.Failed[name] // e.g. its lease expired while it was stopped: it stays (bug 5's fix)
		if n.gone || !n.alive || failedRollout || n.failed == v || n.bad[v] || (r.Target == v && recordedFailed) {
			continue
		}
		if n.running != v {
			out = append(out, fmt.Sprintf("%s runs %s, the tip says %s", name, n.running, v))
		}
	}
	return out
}

// simClock is a node's view of the simulation's time: its own skewed now,
// and timers whose firing takes a turn (gated.after), so every wake-up of
// the coordinator is a scheduled step. Timers and tickers the coordinator
// makes otherwise run on the bubble's time.
type simClock struct {
	clock.System
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

func (c simClock) Now() time.Time                         { return c.now() }
func (c simClock) Since(t time.Time) time.Duration        { return c.now().Sub(t) }
func (c simClock) Until(t time.Time) time.Duration        { return t.Sub(c.now()) }
func (c simClock) After(d time.Duration) <-chan time.Time { return c.after(d) }
