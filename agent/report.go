package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/health"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
)

// probeTimeout bounds the steady-state health probe of a running version.
const probeTimeout = 5 * time.Second

// appReport is an app's report from its local state.
func (a *Agent) appReport(st state.App, t Target, stateName, errText string) reconciler.AppReport {
	r := reconciler.AppReport{Version: st.Active, Previous: st.Previous, State: stateName,
		Rollout: t.Rollout, Lease: t.Lease, Error: errText, Since: st.Since, Swap: a.swapOf(t.App.Name, st.Active)}
	if stateName != reconciler.AppHealthy {
		r.Target = t.Version
	}
	if r.Version == "" && stateName == reconciler.AppFailed {
		r.Previous = "" // nothing ran before; nothing runs
		if f := st.Failed; f != nil && f.Version == t.Version {
			r.NextRetry = f.RetryAt
		}
	}
	return r
}

// localReport describes an app from local state alone (no spec to compare).
func (a *Agent) localReport(name string) reconciler.AppReport {
	st := a.store.App(name)
	r := reconciler.AppReport{Version: st.Active, Previous: st.Previous, State: reconciler.AppHealthy, Since: st.Since,
		Swap: a.swapOf(name, st.Active)}
	switch {
	case st.Active == "":
		r.State = reconciler.AppStopped
	case st.LastError != "":
		r.Error = st.LastError
	}
	if st.Failed != nil && a.stillTargeted(name, st.Failed.Version) {
		r.State, r.Target, r.Error, r.NextRetry = reconciler.AppFailed, st.Failed.Version, failureText(st.Failed), st.Failed.RetryAt
	}
	return r
}

// stillTargeted reports whether the last spec that loaded still targets
// version for app (true when no spec loaded yet: nothing says otherwise).
// A failure is remembered so that the version is not retried, but once a
// rollback commit moved the spec off it, a node serving the version it
// targets is healthy, also while a later tip does not validate.
func (a *Agent) stillTargeted(app, version string) bool {
	if a.specFleet == nil {
		return true
	}
	s, ok := a.specFleet.Apps[app]
	return !ok || s.Version == version
}

func (a *Agent) localReports() map[string]reconciler.AppReport {
	apps := a.store.Get().Apps
	out := map[string]reconciler.AppReport{}
	for _, name := range slices.Sorted(maps.Keys(apps)) {
		out[name] = a.localReport(name)
	}
	return out
}

// steady reports an app that runs its target version: one health probe.
func (a *Agent) steady(ctx context.Context, t Target, st state.App) reconciler.AppReport {
	rel := driver.Release{App: t.App.Name, Version: t.Version, Dir: st.Running.Dir}
	if m, err := a.installedManifest(ctx, t); err == nil {
		rel.Manifest = m
	}
	check, err := healthCheck(t, rel)
	if err == nil && check != nil {
		c := *check
		c.Retries, c.Self = 0, a.selfAddrs()
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err = c.Run(pctx)
		cancel()
	}
	if err != nil {
		return a.appReport(st, t, reconciler.AppUnhealthy, err.Error())
	}
	if st.LastError != "" {
		// Healthy on its version: an earlier error (a release that could
		// not be fetched, say) is over and must not linger in reports.
		if a.saveApp(t.App.Name, state.JournalSettled, func(s *state.App) { s.LastError = "" }) != nil {
			return a.appReport(st, t, reconciler.AppHealthy, "") // logged and counted; the next probe retries
		}
	}
	return a.appReport(st, t, reconciler.AppHealthy, "")
}

// swapOf is how the installed release of app at version switches
// (reconciler.SwapOf), "" when it is not installed.
func (a *Agent) swapOf(app, version string) string {
	if version == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, "releases", app, version, release.ManifestName))
	if err != nil {
		return ""
	}
	m, err := release.ParseManifest(b)
	if err != nil {
		return ""
	}
	return reconciler.SwapOf(m.Driver, len(m.Listen))
}

// announce publishes the last report with one app's entry replaced, in the
// middle of a pass: a switch that begins is "switching" in status and
// --wait while it lasts, not "healthy" until the pass ends.
func (a *Agent) announce(ctx context.Context, app string, rep reconciler.AppReport) {
	r := reconciler.NodeReport{Node: a.cfg.Node, Labels: a.cfg.Labels, AgentVersion: a.cfg.AgentVersion}
	if last := a.last.Load(); last != nil {
		r = *last
	}
	r.Apps = maps.Clone(r.Apps)
	if r.Apps == nil {
		r.Apps = map[string]reconciler.AppReport{}
	}
	r.Apps[app], r.Time = rep, a.cfg.Clock.Now()
	a.publish(ctx, r)
}

// switching announces a switch that begins, and counts it by swap kind.
func (a *Agent) switching(ctx context.Context, t Target, st state.App, p prepared) {
	swap := reconciler.SwapOf(p.driver, len(p.rel.Manifest.Listen))
	a.metrics.swaps.WithLabelValues(t.App.Name, swap).Inc()
	rep := a.appReport(st, t, reconciler.AppSwitching, "")
	rep.Swap = swap
	a.announce(ctx, t.App.Name, rep)
}

// installedManifest is the target's installed manifest with node variables.
func (a *Agent) installedManifest(ctx context.Context, t Target) (release.Manifest, error) {
	p, err := a.install(ctx, Target{App: t.App, Version: t.Version}, a.releaseDir(t))
	if err != nil {
		return release.Manifest{}, err
	}
	return expandManifest(*p, t.Vars)
}

// healthCheck is the app spec's check, with the release manifest's target
// when it names one, node variables substituted. Nil when neither names one.
func healthCheck(t Target, rel driver.Release) (*health.Check, error) {
	h := t.App.Health
	c := health.Check{HTTP: h.HTTP, TCP: h.TCP, Exec: h.Exec, RequiredStatus: h.RequiredStatus,
		Retries: h.Retries, RetryDelay: h.RetryDelay.Duration, Dir: rel.Dir}
	if m := rel.Manifest.Health; m != nil && (m.HTTP != "" || m.TCP != "" || len(m.Exec) > 0) {
		c.HTTP, c.TCP, c.Exec = m.HTTP, m.TCP, m.Exec // already substituted
	}
	var err error
	if c.HTTP, err = expand(c.HTTP, t.Vars); err != nil {
		return nil, err
	}
	if c.TCP, err = expand(c.TCP, t.Vars); err != nil {
		return nil, err
	}
	if c.Exec, err = expandAll(c.Exec, t.Vars); err != nil {
		return nil, err
	}
	if c.HTTP == "" && c.TCP == "" && len(c.Exec) == 0 {
		return nil, nil
	}
	return &c, nil
}

// healthFunc runs check within the agent's health timeout; without a check
// a version counts as healthy once its driver started it.
func (a *Agent) healthFunc(check *health.Check) driver.HealthFunc {
	return func(ctx context.Context) error {
		if check == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, a.cfg.HealthTimeout)
		defer cancel()
		c := *check
		c.Self = a.selfAddrs()
		if err := c.Run(ctx); err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		return nil
	}
}

// releasesTTL is how long a runtime's release list is reused: asking an
// Erlang VM costs an escript run, so not on every pass.
const releasesTTL = time.Minute

// runtimeReleases are the releases the app's runtime knows, for drivers
// that keep several (driver.ReleaseLister); nil for the others.
func (a *Agent) runtimeReleases(ctx context.Context, name string) []reconciler.RuntimeRelease {
	st := a.store.App(name)
	if st.Running == nil {
		return nil
	}
	drv, err := a.driver(st.Driver)
	lister, ok := drv.(driver.ReleaseLister)
	if err != nil || !ok {
		return nil
	}
	a.mu.Lock()
	c, hit := a.releases[name]
	a.mu.Unlock()
	if hit && c.version == st.Active && a.cfg.Clock.Now().Sub(c.at) < releasesTTL {
		return c.list
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := lister.Releases(lctx, *st.Running)
	if err != nil {
		a.log.Warn("list the runtime's releases", "app", name, "err", err)
		return c.list
	}
	a.mu.Lock()
	a.releases[name] = cachedReleases{version: st.Active, at: a.cfg.Clock.Now(), list: list}
	a.mu.Unlock()
	return list
}

// cachedReleases is a runtime's release list as last read.
type cachedReleases struct {
	version string
	at      time.Time
	list    []reconciler.RuntimeRelease
}
