package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// Agent converges one node. Use New, then Run (or Reconcile for one pass).
type Agent struct {
	cfg     Config
	log     *slog.Logger
	store   *state.Store
	metrics *metrics
	tip     *tipWatch                             // the tracked branch's freshness and refusals
	last    atomic.Pointer[reconciler.NodeReport] // served on /healthz
	// lastSpecErr is the spec error last logged: the same one is not
	// logged again at every pass. Only the loop's goroutine uses it.
	lastSpecErr string
	// The fleet loaded from specCommit, reused while the tip stays there
	// (loading CUE is the costliest part of an idle pass). Loop goroutine only.
	specCommit plumbing.Hash
	specFleet  *spec.Fleet
	// refusedCommit's spec was refused (invalid, or over a limit) with
	// refused: the same files are not evaluated again at every pass, so a
	// spec that costs the whole --spec-timeout costs it once per commit.
	// specFleet stays the last fleet that loaded (stillTargeted reads it).
	// Loop goroutine only.
	refusedCommit plumbing.Hash
	refused       error
	// marks: app -> whether marksAt (the tip) is a rollback of it
	// (fleetrepo.RollbackMarkOf), read once per tip. Loop goroutine only.
	marksAt plumbing.Hash
	marks   map[string]*reconciler.RollbackMark
	// gateAsked: app -> when its metric gates were last asked during a
	// canary monitor (monitorMetrics). Loop goroutine only.
	gateAsked map[string]time.Time
	addr      atomic.Pointer[net.Addr] // of /healthz, once listening
	dl        *downloads               // releases being installed, off the loop
	dup       atomic.Pointer[string]   // another agent writes this node's report (duplicate.go)
	announced atomic.Bool              // the first pass wrote a report before acting
	// The last read of the tracked branch: when (zero: never), what it
	// returned. Loop goroutine only.
	lastFetch time.Time
	fetched   plumbing.Hash
	fetchErr  error
	refetch   atomic.Bool // a Permit asked for a read of the branch (fetchDue)
	tipHint   tipHintState

	mu        sync.Mutex
	recheckAt time.Time                 // earliest pass a decision asked for
	releases  map[string]cachedReleases // by app, for drivers that list them
}

// New checks cfg and opens the local state.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	st := cfg.State
	if st == nil {
		var err error
		if st, err = state.OpenClock(cfg.StateDir, cfg.Clock); err != nil {
			return nil, fmt.Errorf("agent %s: %w", cfg.Node, err)
		}
	}
	log := cfg.Logger.With("node", cfg.Node)
	return &Agent{cfg: cfg, log: log, store: st, metrics: newMetrics(cfg.Registry),
		tip: newTipWatch(cfg.Registry, log, cfg.Clock.Now), releases: map[string]cachedReleases{}, dl: newDownloads(),
		gateAsked: map[string]time.Time{}}, nil
}

// Run runs the agent until ctx ends (nil), or for one pass with Config.Once
// (nil when converged, ErrNotConverged otherwise). Workloads keep running
// when it returns.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// State gives the agent's local state.
func (a *Agent) State() *state.Store { return a.store }

// Addr is the address /healthz and /metrics are served on, once listening.
func (a *Agent) Addr() net.Addr {
	if p := a.addr.Load(); p != nil {
		return *p
	}
	return nil
}

// Run implements the package's loop: recover, then one select over watch
// events, the poll ticker and ctx.
//
// Git traffic (docs/agent.md, "Git traffic"): a pass reads the tracked
// branch from the repository (one ref listing when it has not moved) only
// when it may have moved: at the first pass, at every Poll tick, when a
// watch of the branch wakes the agent (Desired.Watch, Config.TipHint: the
// etcd tip key, Config.Wakers: a push webhook), or when a Permit says this node wrote
// to it. Other passes (the shared state moved, a download finished, a
// decision's recheck) reuse the tip of the last read.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.dl.stop() // after cancel: the downloads end with ctx
	defer cancel()
	a.dl.background = !a.cfg.Once
	if err := a.startHTTP(ctx, &wg); err != nil {
		return err
	}
	a.Recover(ctx)
	wake := make(chan struct{}, 1)   // the shared state may have moved
	branch := make(chan struct{}, 1) // the tracked branch may have moved
	if !a.cfg.Once {
		a.startWatches(ctx, &wg, wake, branch)
	}
	// The first poll comes at a random point of the second half of Poll:
	// agents started together (a reboot wave, a fleet-wide agent upgrade)
	// would otherwise read Git in lockstep, all at once and then none for
	// a whole Poll; spread out, one of them sees a push sooner and, with
	// the etcd tip key, wakes the rest.
	tick := a.cfg.Clock.NewTimer(a.cfg.Poll/2 + rand.N(a.cfg.Poll/2+1))
	defer tick.Stop()
	recheck := a.cfg.Clock.NewTimer(a.cfg.Poll)
	defer recheck.Stop()
	fetch := true
	for {
		converged := a.reconcile(ctx, fetch)
		if a.cfg.Once {
			if !converged {
				return ErrNotConverged
			}
			return nil
		}
		a.armRecheck(recheck)
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; workloads keep running")
			return nil
		case <-branch:
			fetch = true
		case <-tick.C():
			fetch = true
			tick.Reset(a.cfg.Poll)
		case <-wake:
			fetch = a.fetchDue()
		case <-a.dl.ready: // a release is installed (or refused)
			fetch = a.fetchDue()
		case <-recheck.C():
			fetch = a.fetchDue()
		}
	}
}

// startWatches runs the watches of the shared state (wake) and of the
// tracked branch (branch: Desired.Watch, the TipHint and every Waker).
func (a *Agent) startWatches(ctx context.Context, wg *sync.WaitGroup, wake, branch chan struct{}) {
	wg.Go(func() { a.watch(ctx, a.cfg.Desired, "tracked branch", branch) })
	if a.cfg.SharedWatch != nil {
		wg.Go(func() { a.watch(ctx, a.cfg.SharedWatch, "shared state", wake) })
	}
	if h := a.cfg.TipHint; h != nil {
		wg.Go(func() { a.watchTipHint(ctx, h, branch) })
	}
	for _, w := range a.cfg.Wakers {
		wg.Go(func() { a.watch(ctx, w, "webhook", branch) })
	}
}

// fetchDue reports whether a pass that no watch of the branch asked for
// reads the branch all the same: a Permit asked for it (this node wrote a
// commit to the branch), or the last read is a Poll old.
func (a *Agent) fetchDue() bool {
	return a.refetch.Swap(false) || a.lastFetch.IsZero() || a.cfg.Clock.Since(a.lastFetch) >= a.cfg.Poll
}

// armRecheck sets the recheck timer to the earliest recheck a decision of
// the last pass asked for, or stops it: the Poll ticker covers the rest.
func (a *Agent) armRecheck(t clock.Timer) {
	t.Stop()
	if d, ok := a.untilRecheck(); ok {
		t.Reset(d)
	}
}

// untilRecheck is how long until the earliest recheck a decision of the
// last pass asked for (at most Poll); false when none did.
func (a *Agent) untilRecheck() (time.Duration, bool) {
	a.mu.Lock()
	at := a.recheckAt
	a.recheckAt = time.Time{}
	a.mu.Unlock()
	if at.IsZero() {
		return 0, false
	}
	return min(max(a.cfg.Clock.Until(at), 10*time.Millisecond), a.cfg.Poll), true
}

// askRecheck records a decision's wish for another pass at t.
func (a *Agent) askRecheck(t time.Time) {
	if t.IsZero() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.recheckAt.IsZero() || t.Before(a.recheckAt) {
		a.recheckAt = t
	}
}

func (a *Agent) watch(ctx context.Context, w Watcher, what string, wake chan<- struct{}) {
	err := w.Watch(ctx, func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("watching failed; polling only", "what", what, "err", err)
	}
}

func (a *Agent) startHTTP(ctx context.Context, wg *sync.WaitGroup) error {
	if a.cfg.Listen == "" {
		return nil
	}
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent %s: listen for /healthz: %w", a.cfg.Node, err)
	}
	addr := ln.Addr()
	a.addr.Store(&addr)
	a.log.Info("serving /healthz and /metrics", "addr", addr.String())
	wg.Go(func() {
		if err := a.serve(ctx, ln); err != nil {
			a.log.Error("http server", "err", err)
		}
	})
	return nil
}

// Reconcile makes one pass (see the package doc), reading the tracked
// branch, and reports whether every app targeting this node runs its
// decided version, healthy.
func (a *Agent) Reconcile(ctx context.Context) bool { return a.reconcile(ctx, true) }

// reconcile is Reconcile; without fetch it reuses the last read of the
// tracked branch (its tip, and its error).
func (a *Agent) reconcile(ctx context.Context, fetch bool) bool {
	report := reconciler.NodeReport{Node: a.cfg.Node, Labels: a.cfg.Labels, AgentVersion: a.cfg.AgentVersion, Time: a.cfg.Clock.Now()}
	commit, fleet, err := a.load(ctx, fetch)
	if !commit.IsZero() {
		report.SpecCommit = commit.String()
	}
	reportFetch(&report, err)
	if a.announced.CompareAndSwap(false, true) {
		// Say who this agent is before it acts for the first time: its
		// first report write is where two agents with one node name find
		// each other (fleetrepo.DuplicateNodeError), and the second must
		// not have installed or switched anything by then.
		hello := report
		hello.Apps = a.localReports()
		a.publish(ctx, hello)
	}
	if report.Conflict = a.duplicate(); report.Conflict != "" {
		fleet = nil // two agents with one node name: act on nothing
	}
	if fleet == nil {
		report.Apps = a.localReports()
		a.publish(ctx, report)
		return false
	}
	report.Labels = nodeLabels(fleet, a.cfg.Node, a.cfg.Labels)
	apps, converged := a.applyFleet(ctx, commit, fleet, report.Labels)
	report.Apps = apps
	a.publish(ctx, report)
	return converged && err == nil
}

// load fetches the tip (or, without fetch, takes the last fetch's) and
// loads its spec. A fetch error with a previously accepted tip still
// returns that tip's fleet, with the error.
func (a *Agent) load(ctx context.Context, fetch bool) (plumbing.Hash, *spec.Fleet, error) {
	commit, ferr := a.fetched, a.fetchErr
	if fetch || a.lastFetch.IsZero() {
		commit, ferr = a.fetch(ctx)
	}
	if commit.IsZero() {
		return commit, nil, ferr
	}
	if commit == a.specCommit && a.specFleet != nil {
		return commit, a.specFleet, ferr
	}
	if commit == a.refusedCommit && a.refused != nil {
		return commit, nil, a.refused
	}
	fleet, err := a.loadSpec(ctx, commit)
	if err != nil {
		a.metrics.reconcileErrors.WithLabelValues("spec").Inc()
		if err.Error() != a.lastSpecErr {
			a.log.Error("spec not applied: keeping what runs", "commit", commit.String(), "err", err)
		}
		a.lastSpecErr = err.Error()
		err = fmt.Errorf("spec at %s not applied: %w", commit.String()[:12], err)
		if refusal(err) {
			a.refusedCommit, a.refused = commit, err
		}
		return commit, nil, err
	}
	a.lastSpecErr = ""
	a.specCommit, a.specFleet = commit, fleet
	return commit, fleet, ferr
}

// fetch reads the tracked branch, and publishes a new tip to the TipHint.
func (a *Agent) fetch(ctx context.Context) (plumbing.Hash, error) {
	start := a.cfg.Clock.Now()
	before := a.fetched
	a.importTipObjects(ctx, before)
	commit, ferr := a.cfg.Desired.Fetch(ctx)
	a.metrics.fetchSeconds.Observe(a.cfg.Clock.Since(start).Seconds())
	if refused := a.tip.observe(a.cfg.Desired, commit, ferr); ferr != nil {
		a.metrics.reconcileErrors.WithLabelValues("fetch").Inc()
		if !refused { // a refusal is logged once, as an ERROR
			a.log.Warn("fetch fleet repo", "err", ferr)
		}
	}
	a.lastFetch, a.fetched, a.fetchErr = start, commit, ferr
	if ferr == nil && !commit.IsZero() {
		a.publishTip(ctx, before, commit)
	}
	return commit, ferr
}

// loadSpec reads commit's spec files and evaluates them with the
// SpecLoader: outside View, so a long evaluation does not hold up fetches.
func (a *Agent) loadSpec(ctx context.Context, commit plumbing.Hash) (*spec.Fleet, error) {
	var files map[string][]byte
	err := a.cfg.Desired.View(func(repo *git.Repository) error {
		var err error
		files, err = spec.ReadCommit(repo, commit, a.cfg.SpecDir)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a.cfg.SpecLoader.LoadSpec(ctx, files)
}

// refusal reports whether a spec error is a verdict on the commit's files
// (problems in them, or a limit), which evaluating them again would repeat;
// other errors (reading the objects, starting a process) are retried.
func refusal(err error) bool {
	var serr *spec.Errors
	return errors.As(err, &serr) || errors.Is(err, spec.ErrLimit)
}

// applyFleet converges every app targeting this node and stops the others.
func (a *Agent) applyFleet(ctx context.Context, commit plumbing.Hash, fleet *spec.Fleet, labels map[string]string) (map[string]reconciler.AppReport, bool) {
	vars := nodeVars(fleet, a.cfg.Node, a.cfg.Vars)
	reports := map[string]reconciler.AppReport{}
	converged := true
	for _, name := range slices.Sorted(maps.Keys(fleet.Apps)) {
		app := fleet.Apps[name]
		if app.Name == "" {
			app.Name = name
		}
		if !app.Nodes.Match(a.cfg.Node, labels) {
			continue
		}
		rep, ok := a.step(ctx, commit, fleet, app, vars)
		rep.Releases = a.runtimeReleases(ctx, name)
		reports[name] = rep
		converged = converged && ok
	}
	for name := range a.store.Get().Apps {
		if _, ok := reports[name]; !ok {
			if err := a.remove(ctx, name); err != nil {
				converged = false
				reports[name] = a.localReport(name)
			}
		}
	}
	a.dl.retain(func(app string) bool { _, ok := reports[app]; return ok })
	return reports, converged
}

// step decides one app's version and converges to it.
func (a *Agent) step(ctx context.Context, commit plumbing.Hash, fleet *spec.Fleet, app spec.App, vars map[string]string) (reconciler.AppReport, bool) {
	if rep, busy := a.prefetch(ctx, app, vars); busy {
		return rep, false // downloading: no decision (no lease) before it is here
	}
	st := a.store.App(app.Name)
	in := DecideInput{Node: a.cfg.Node, Commit: commit, Fleet: fleet, App: app,
		Local: Local{Active: st.Active, Previous: st.Previous, Watching: st.Watch != nil && st.Watch.Version == st.Active}, Rollback: a.rollbackMark(commit, app.Name)}
	if st.Failed != nil && !a.retryDue(st) {
		in.Local.Failed = st.Failed.Version
		a.askRecheck(st.Failed.RetryAt) // a failed first install: pass again when it is retried
	}
	p, err := a.cfg.Coordinator.Permit(ctx, in)
	a.askRecheck(p.Recheck)
	if p.Fetch {
		a.refetch.Store(true)
		a.askRecheck(a.cfg.Clock.Now())
	}
	if err != nil {
		a.metrics.reconcileErrors.WithLabelValues("decide").Inc()
		rep := a.localReport(app.Name)
		rep.Target, rep.Error = app.Version, fmt.Sprintf("decide %s on %s: %v", app.Name, a.cfg.Node, err)
		if p.Blocked != "" {
			rep.State, rep.Error = reconciler.AppBlocked, p.Blocked
		}
		rep.Rollout = p.Rollout
		a.blocked(app.Name, p.Blocked)
		return rep, false
	}
	a.blocked(app.Name, p.Blocked)
	if p.Version == "" {
		rep := a.localReport(app.Name)
		switch {
		case p.Blocked != "":
			rep.State, rep.Target, rep.Error = reconciler.AppBlocked, app.Version, p.Blocked
		case p.Waiting != "":
			rep.State, rep.Target, rep.Error = reconciler.AppWaiting, app.Version, p.Waiting
		}
		rep.Rollout = p.Rollout
		// Converged means running the tip's version: a pass that rolled the
		// app back (wrote the rollback commit) did not converge to its tip.
		return rep, p.Waiting == "" && p.Blocked == "" && rep.State == reconciler.AppHealthy && rep.Version == app.Version
	}
	t := Target{App: app, Version: p.Version, Vars: vars, Rollout: p.Rollout, Guard: p.Lease, Monitor: p.Monitor}
	if p.Lease != nil {
		t.Lease = p.Lease.Token()
	}
	rep, err := a.Converge(ctx, t)
	if p.Lease != nil {
		p.Lease.Finish(ctx, rep, err)
	}
	return rep, err == nil && rep.State == reconciler.AppHealthy && rep.Version == app.Version
}

// blocked keeps the reconciler_blocked gauge of app at 1 while a person
// must act (why says on what), 0 otherwise.
func (a *Agent) blocked(app, why string) {
	v := 0.0
	if why != "" {
		v = 1
	}
	a.metrics.blocked.WithLabelValues(app).Set(v)
}

// remove stops an app that no longer targets this node and forgets it.
func (a *Agent) remove(ctx context.Context, name string) error {
	st := a.store.App(name)
	if st.Running != nil {
		drv, err := a.driver(st.Driver)
		if err == nil {
			a.log.Info("app no longer targets this node: stopping it", "app", name, "version", st.Active)
			err = drv.Stop(ctx, *st.Running)
		}
		if err != nil {
			a.metrics.reconcileErrors.WithLabelValues("stop").Inc()
			a.log.Error("stop app", "app", name, "err", err)
			err = fmt.Errorf("stop %s %s on %s: %w", name, st.Active, a.cfg.Node, err)
			if werr := a.saveApp(name, state.JournalStopFailed, func(s *state.App) { s.LastError = err.Error() }); werr != nil {
				return errors.Join(err, werr)
			}
			return err
		}
	}
	return a.store.DeleteApp(name)
}

func (a *Agent) driver(name string) (driver.Driver, error) {
	name = driverOrDefault(name)
	d, ok := a.cfg.Drivers[name]
	if !ok {
		return nil, fmt.Errorf("no %q driver on this agent (have %v)", name, slices.Sorted(maps.Keys(a.cfg.Drivers)))
	}
	return d, nil
}

// driverOrDefault is a manifest's driver name, "process" when it names none.
func driverOrDefault(name string) string {
	if name == "" {
		return "process"
	}
	return name
}

// sameDriver reports whether two manifests' driver names are one driver
// ("" is "process").
func sameDriver(a, b string) bool { return driverOrDefault(a) == driverOrDefault(b) }

// publish serves the report on /healthz and writes it to the Reporter.
func (a *Agent) publish(ctx context.Context, r reconciler.NodeReport) {
	r = redactReport(r)
	a.last.Store(&r)
	if a.cfg.Reporter == nil {
		return
	}
	if err := a.cfg.Reporter.WriteReport(ctx, r); a.noteDuplicate(err) {
		a.metrics.reconcileErrors.WithLabelValues("report").Inc()
	} else if err != nil && !errors.Is(err, context.Canceled) {
		a.metrics.reconcileErrors.WithLabelValues("report").Inc()
		a.log.Warn("write node report", "err", err)
	}
}
