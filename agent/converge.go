package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/health"
	"github.com/fleetops/reconciler/agent/metricgate"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/internal/regfile"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

// Target is one app at the version this node should run now.
type Target struct {
	App     spec.App
	Version string
	// Vars are the node variables for ${NAME} substitution.
	Vars map[string]string
	// Rollout and Lease are copied into the report (coordination).
	Rollout, Lease string
	// Guard, when set, must let the switch begin (Lease.Begin) and bounds it.
	Guard Lease
	// Monitor: a canary under its monitor (Permit.Monitor).
	Monitor bool
}

// prepared is a release ready to switch to.
type prepared struct {
	rel    driver.Release
	check  *health.Check    // nil: no health check
	gate   *metricgate.Gate // nil: no metric gates
	driver string
}

// Converge moves one app to t.Version on this node: install the verified
// release (or reuse it), switch through its driver with the health check,
// watch its metric gates (gates.go), and record the outcome. A failure
// (a failed gate included) leaves the previous version running and
// is returned with the report; a version whose switch failed is remembered
// and not tried again (the report stays "failed") until the target changes.
// It is the reusable per-app step under any coordination.
func (a *Agent) Converge(ctx context.Context, t Target) (reconciler.AppReport, error) {
	name, v := t.App.Name, t.Version
	st := a.store.App(name)
	if st.Active == v && st.Running != nil && st.Watch != nil && st.Watch.Version == v {
		return a.resumeWatch(ctx, t, st)
	}
	if st.Active == v && st.Running != nil {
		rep := a.steady(ctx, t, st)
		if rep.State != reconciler.AppHealthy || !t.Monitor {
			return rep, nil
		}
		if err := a.monitorMetrics(ctx, t); err != nil {
			a.log.Error("canary metric gate failed", "app", name, "version", v, "err", err)
			return a.appReport(st, t, reconciler.AppUnhealthy, err.Error()), err
		}
		return rep, nil
	}
	if st.Failed != nil && st.Failed.Version == v && !a.retryDue(st) {
		return a.appReport(st, t, reconciler.AppFailed, failureText(st.Failed)), nil
	}
	if r := st.RefusalOf(downloadKey(t)); r != nil {
		err := fmt.Errorf("%s (refused %s; not fetched again until the spec changes the artifact)", r.Reason, r.Time.Format(time.RFC3339))
		return a.appReport(st, t, reconciler.AppFailed, err.Error()), err
	}
	p, err := a.prepare(ctx, t)
	if errors.Is(err, errDownloading) {
		return a.appReport(st, t, reconciler.AppUpgrading, ""), nil
	}
	err = redact.Error(err) // it is logged, kept in the state and reported
	if err != nil {
		a.metrics.reconcileErrors.WithLabelValues("install").Inc()
		level := slog.LevelError
		if err.Error() == st.LastError {
			level = slog.LevelDebug // said already, at an earlier pass
		}
		a.log.Log(ctx, level, "release not applied: keeping what runs", "app", name, "version", v, "err", err)
		var refused *release.RefusedError
		isRefused := errors.As(err, &refused)
		if err.Error() == st.LastError && st.Last == state.JournalInstallFailed {
			// Journaled at an earlier pass: the same failure is one step.
			return a.appReport(st, t, reconciler.AppFailed, err.Error()), err
		}
		if werr := a.saveApp(name, state.JournalInstallFailed, func(s *state.App) {
			s.LastError, s.ErrorTime = err.Error(), a.cfg.Clock.Now()
			if isRefused {
				s.AddRefusal(state.Refusal{Key: downloadKey(t), SHA256: refused.SHA256, Reason: err.Error(), Time: a.cfg.Clock.Now()})
			}
		}); werr != nil {
			err = errors.Join(err, werr)
		}
		return a.appReport(a.store.App(name), t, reconciler.AppFailed, err.Error()), err
	}
	return a.switchTo(ctx, t, st, p)
}

// prepare installs the release (reusing an installed one) and resolves its
// node variables and health check.
func (a *Agent) prepare(ctx context.Context, t Target) (prepared, error) {
	name, v := t.App.Name, t.Version
	if !release.ValidVersion(v) { // it names a directory; it may come from a shared ref
		return prepared{}, fmt.Errorf("release %s %q on node %s: not a valid version (1-128 letters, digits, '.', '_', '+', '-')", name, v, a.cfg.Node)
	}
	dir := a.releaseDir(t)
	m, err := a.install(ctx, t, dir)
	if err != nil {
		return prepared{}, err
	}
	em, err := expandManifest(*m, t.Vars)
	if err != nil {
		return prepared{}, fmt.Errorf("release %s %s on node %s: %w", name, v, a.cfg.Node, err)
	}
	rel := driver.Release{App: name, Version: v, Dir: dir, Manifest: em, Env: map[string]string{
		"RECONCILER_NODE": a.cfg.Node, "RECONCILER_APP": name, "RECONCILER_VERSION": v}}
	check, err := healthCheck(t, rel)
	if err != nil {
		return prepared{}, fmt.Errorf("health check of %s %s on node %s: %w", name, v, a.cfg.Node, err)
	}
	gate, err := a.metricGate(t)
	if err != nil {
		return prepared{}, fmt.Errorf("metric gates of %s %s on node %s: %w", name, v, a.cfg.Node, err)
	}
	return prepared{rel: rel, check: check, gate: gate, driver: em.Driver}, nil
}

// install returns the manifest of the release in dir, installing it first
// when it is not there. While the agent loops the install runs in the
// background (downloads) and one still running gives errDownloading.
func (a *Agent) install(ctx context.Context, t Target, dir string) (*release.Manifest, error) {
	m, err := installedAt(t, dir)
	if m != nil || !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	if t.Version != t.App.Version {
		return nil, fmt.Errorf("install %s %s: the spec's artifact is for version %s", t.App.Name, t.Version, t.App.Version)
	}
	dl := a.startDownload(ctx, t, dir)
	return a.dl.take(t.App.Name, dl)
}

// installedAt reads the manifest of the release installed in dir; an
// error wrapping fs.ErrNotExist when there is none.
func installedAt(t Target, dir string) (*release.Manifest, error) {
	b, err := regfile.ReadFile(filepath.Join(dir, release.ManifestName), 0)
	switch {
	case err == nil:
		return release.ParseManifest(b)
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return nil, fmt.Errorf("installed release %s %s: %w", t.App.Name, t.Version, err)
}

// startDownload returns the download of t's release into dir, starting it
// (and cancelling one of an older target of the app) when it is not running.
func (a *Agent) startDownload(ctx context.Context, t Target, dir string) *download {
	name, art := t.App.Name, t.App.Artifact
	dl, started, cancelled := a.dl.get(ctx, name, downloadKey(t), func(ctx context.Context) (*release.Manifest, error) {
		return a.download(ctx, t, dir)
	})
	if cancelled != "" {
		a.log.Warn("target changed: download cancelled", "app", name, "cancelled", cancelled, "now", t.Version)
	}
	if started {
		a.log.Info("installing release", "app", name, "version", t.Version, "url", redact.String(art.URL))
		a.announce(ctx, name, a.appReport(a.store.App(name), t, reconciler.AppUpgrading, ""))
	}
	return dl
}

// prefetch starts installing the spec's version of app in the background
// when this node will need it, before any decision: a download takes no
// lease and holds up no other app. It reports the app "upgrading" while
// the download runs. A single pass (Once) does not prefetch.
func (a *Agent) prefetch(ctx context.Context, app spec.App, vars map[string]string) (reconciler.AppReport, bool) {
	st := a.store.App(app.Name)
	t := Target{App: app, Version: app.Version, Vars: vars}
	if !a.dl.background || app.Paused || st.Active == app.Version || (st.Failed != nil && st.Failed.Version == app.Version && !a.retryDue(st)) ||
		st.RefusalOf(downloadKey(t)) != nil {
		return reconciler.AppReport{}, false
	}
	dir := a.releaseDir(t)
	if _, err := installedAt(t, dir); !errors.Is(err, fs.ErrNotExist) {
		return reconciler.AppReport{}, false
	}
	if dl := a.startDownload(ctx, t, dir); dl.done() {
		return reconciler.AppReport{}, false // Converge takes its outcome
	}
	return a.appReport(st, t, reconciler.AppUpgrading, ""), true
}

// downloadKey names what a download of t fetches: a change of any part is
// a new download.
func downloadKey(t Target) string {
	art := t.App.Artifact
	return t.Version + " " + art.URL + " " + art.Signature + " " + art.SHA256
}

// download fetches, verifies and unpacks t's release into dir.
func (a *Agent) download(ctx context.Context, t Target, dir string) (*release.Manifest, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("install %s %s: %w", t.App.Name, t.Version, err)
	}
	art := t.App.Artifact
	st := a.store.App(t.App.Name)
	src := release.Source{URL: art.URL, SignatureURL: art.Signature, SHA256: art.SHA256, Refused: st.RefusedDigests()}
	m, err := a.cfg.Installer.Install(ctx, src, release.Want{App: t.App.Name, Version: t.Version}, dir)
	if err != nil {
		return nil, err
	}
	if err := a.saveApp(t.App.Name, state.JournalInstalled, func(s *state.App) { s.AddInstalled(t.Version) }); err != nil {
		return nil, err // not recorded installed: it must not be switched to
	}
	return m, nil
}

// switchTo runs the driver's switch and records the outcome.
func (a *Agent) switchTo(ctx context.Context, t Target, st state.App, p prepared) (reconciler.AppReport, error) {
	name, v := t.App.Name, t.Version
	drv, err := a.driver(p.driver)
	if err != nil {
		err = fmt.Errorf("switch %s to %s on %s: %w", name, v, a.cfg.Node, err)
		return a.appReport(st, t, reconciler.AppFailed, err.Error()), err
	}
	cur := st.Running
	if !sameDriver(st.Driver, p.driver) && st.Running != nil {
		cur = nil // another driver runs it: start fresh, stop the old one after
	}
	sctx := ctx
	if t.Guard != nil {
		if sctx, err = t.Guard.Begin(ctx, a.cfg.SwitchAbort); err != nil {
			a.log.Warn("switch not begun: previous version kept", "app", name, "version", v, "err", err)
			return a.appReport(st, t, reconciler.AppWaiting, err.Error()), err
		}
	}
	if err := a.saveApp(name, state.JournalSwitching, func(s *state.App) {
		s.Step = &state.Step{Op: state.StepSwitch, From: st.Active, To: v, Started: a.cfg.Clock.Now()}
	}); err != nil {
		return a.appReport(st, t, reconciler.AppFailed, err.Error()), err
	}
	a.log.Info("switching", "app", name, "from", st.Active, "to", v, "driver", p.driver)
	a.switching(ctx, t, st, p) // report "switching" now, not at the end of the pass
	a.metrics.active.Inc()
	start := a.cfg.Clock.Now()
	var running driver.Running
	if err = sctx.Err(); err == nil { // last look before the driver acts: a lease may have run out while this node stood still
		running, err = drv.Switch(sctx, cur, p.rel, a.healthFunc(versionGuard(p.check, st.Active, v)))
	} else {
		err = fmt.Errorf("switch %s to %s not started: %w", name, v, err) // what runs stays recorded
	}
	err = redact.Error(err) // a health URL's credentials stay out of state and reports
	a.metrics.active.Dec()
	if err != nil && sctx.Err() != nil {
		return a.switchInterrupted(t, st, running, err)
	}
	if err != nil {
		return a.switchFailed(t, st, running, a.cfg.Clock.Since(start), err)
	}
	if cur == nil && st.Running != nil {
		a.stopOther(ctx, name, st)
	}
	var watch *state.Watch
	if p.gate != nil {
		watch = &state.Watch{Version: v, Until: a.cfg.Clock.Now().Add(watchWindow(p.gate)),
			From: st.Active, FromPrevious: st.Previous, FromDriver: st.Driver}
	}
	rep, err := a.switched(t, p.driver, running, a.cfg.Clock.Since(start), watch)
	if err != nil || p.gate == nil {
		return rep, err
	}
	return a.watchMetrics(ctx, t, st, p, running, rep)
}

// versionGuard makes a switch's health check ignore answers from the
// version being replaced, which may still serve on a shared socket. With
// nothing to replace (a first install) any answer counts, whatever version
// the workload says it is.
func versionGuard(c *health.Check, replacing, v string) *health.Check {
	if c == nil || replacing == "" || replacing == v {
		return c
	}
	g := *c
	g.Version, g.Replacing = v, replacing
	return &g
}

// switched records a successful switch.
func (a *Agent) switched(t Target, driverName string, running driver.Running, took time.Duration, watch *state.Watch) (reconciler.AppReport, error) {
	name, v := t.App.Name, t.Version
	a.metrics.upgradeSeconds.WithLabelValues(name, ResultSuccess).Observe(took.Seconds())
	a.metrics.upgrades.WithLabelValues(name, ResultSuccess).Inc()
	a.log.Info("switched", "app", name, "version", v, "took", took)
	err := a.saveApp(name, state.JournalSwitched, func(s *state.App) {
		if s.Active != v {
			s.Previous, s.Active = s.Active, v
		}
		s.Driver, s.Running, s.Step, s.Failed, s.LastError, s.Watch = driverName, &running, nil, nil, "", watch
		s.Since = a.cfg.Clock.Now()
		s.AddInstalled(v)
	})
	a.prune(name)
	return a.appReport(a.store.App(name), t, reconciler.AppHealthy, ""), err
}

// switchFailed records a failed switch: the previous version runs, and v is
// not retried; or nothing runs (a first install), and v is retried with
// backoff.
func (a *Agent) switchFailed(t Target, st state.App, running driver.Running, took time.Duration, err error) (reconciler.AppReport, error) {
	name, v := t.App.Name, t.Version
	result := ResultRolledBack
	if st.Active == "" {
		result = ResultFailed
	}
	a.metrics.upgradeSeconds.WithLabelValues(name, result).Observe(took.Seconds())
	a.metrics.upgrades.WithLabelValues(name, result).Inc()
	a.metrics.reconcileErrors.WithLabelValues("switch").Inc()
	a.log.Error("switch failed: previous version kept", "app", name, "version", v, "previous", st.Active, "err", err)
	now := a.cfg.Clock.Now()
	if werr := a.saveApp(name, state.JournalSwitchFailed, func(s *state.App) {
		if running.App != "" {
			s.Running = &running
		}
		if s.Running == nil {
			s.Active = ""
		}
		s.Step, s.LastError, s.ErrorTime, s.Since = nil, err.Error(), now, now
		f := &state.Failure{Version: v, Reason: err.Error(), Time: now}
		if s.Active == "" { // a first install: nothing serves; try again later
			f.Attempts = 1
			if st.Failed != nil && st.Failed.Version == v {
				f.Attempts = st.Failed.Attempts + 1
			}
			f.RetryAt = now.Add(firstInstallBackoff(f.Attempts))
		}
		s.Failed = f
	}); werr != nil {
		err = errors.Join(err, werr)
	}
	text := err.Error()
	if f := a.store.App(name).Failed; f != nil && !f.RetryAt.IsZero() {
		text = failureText(f)
	}
	return a.appReport(a.store.App(name), t, reconciler.AppFailed, text), err
}

// switchInterrupted records a switch abandoned because the agent is
// stopping: the previous version runs, and the target is tried again by
// the next agent (it did not fail).
func (a *Agent) switchInterrupted(t Target, st state.App, running driver.Running, err error) (reconciler.AppReport, error) {
	a.log.Warn("switch interrupted: previous version kept", "app", t.App.Name, "version", t.Version, "err", err)
	if werr := a.saveApp(t.App.Name, state.JournalSwitchInterrupted, func(s *state.App) {
		if running.App != "" {
			s.Running = &running
		}
		s.Step, s.LastError = nil, "switch to "+t.Version+" interrupted: "+err.Error()
	}); werr != nil {
		err = errors.Join(err, werr)
	}
	return a.appReport(a.store.App(t.App.Name), t, reconciler.AppFailed, err.Error()), err
}

// stopOther stops the version another driver ran, after a switch of drivers.
func (a *Agent) stopOther(ctx context.Context, name string, st state.App) {
	old, err := a.driver(st.Driver)
	if err == nil {
		err = old.Stop(ctx, *st.Running)
	}
	if err != nil {
		a.log.Error("stop the version the previous driver ran", "app", name, "version", st.Active, "err", err)
	}
}

// saveApp journals one step of an app (state.JournalStep): one write of
// its local state, which makes the step's change f. A failed write is
// logged, counted (reconciler_state_write_errors_total) and returned: the
// caller stops the step it guards, as the state would not say what runs.
func (a *Agent) saveApp(name string, step state.JournalStep, f func(*state.App)) error {
	err := a.store.UpdateApp(name, func(s *state.App) {
		f(s)
		if step != state.JournalPruned { // housekeeping, not a step of converging
			s.Last, s.LastTime = step, a.cfg.Clock.Now()
		}
	})
	if err == nil {
		return nil
	}
	a.metrics.stateWrites.WithLabelValues(string(step)).Inc()
	err = fmt.Errorf("write local state of app %s (%s) in %s on %s: %w; check the state directory is writable and not full",
		name, step, a.cfg.StateDir, a.cfg.Node, err)
	a.log.Error("local state not written: step stopped", "app", name, "step", step, "err", err)
	return err
}

// firstInstallBackoff is the wait before attempt n+1 of a failed first
// install: 30s, doubling, at most 10 minutes.
func firstInstallBackoff(n int) time.Duration {
	return min(30*time.Second<<min(max(n-1, 0), 5), 10*time.Minute)
}

// retryDue reports whether st's failed version is a first install whose
// backoff has run out: it is tried again.
func (a *Agent) retryDue(st state.App) bool {
	return st.Failed != nil && !st.Failed.RetryAt.IsZero() && !a.cfg.Clock.Now().Before(st.Failed.RetryAt)
}

// failureText is a remembered failure as the report says it, with the next
// try of a first install.
func failureText(f *state.Failure) string {
	if f.RetryAt.IsZero() {
		return f.Reason
	}
	return fmt.Sprintf("%s; nothing ran before: retrying at %s (attempt %d)", f.Reason, f.RetryAt.UTC().Format(time.RFC3339), f.Attempts+1)
}
