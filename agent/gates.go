package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/metricgate"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// The metric gates (health.metrics, docs/rollouts.md): after a switch the
// node watches them for their `for` before its outcome counts, and rolls
// back locally when one fails, as after a failed health check; during a
// canary's monitor each steady probe also asks them, once per interval.

// metricGate is the app's metric gates on this node, node variables
// substituted (${NODE} is the node's name unless a variable NODE says
// otherwise); nil when the app has none.
func (a *Agent) metricGate(t Target) (*metricgate.Gate, error) {
	h := t.App.Health
	if len(h.Metrics) == 0 {
		return nil, nil
	}
	vars := maps.Clone(t.Vars)
	if vars == nil {
		vars = map[string]string{}
	}
	if _, ok := vars["NODE"]; !ok {
		vars["NODE"] = a.cfg.Node
	}
	prom, err := expand(h.Prometheus, vars)
	if err != nil {
		return nil, fmt.Errorf("health.prometheus: %w", err)
	}
	g := &metricgate.Gate{Prometheus: prom, Clock: a.cfg.Clock, Metrics: make([]spec.Metric, len(h.Metrics))}
	for i, m := range h.Metrics {
		if m.Query, err = expand(m.Query, vars); err != nil {
			return nil, fmt.Errorf("health.metrics %s: %w", m.Name, err)
		}
		g.Metrics[i] = m
	}
	return g, nil
}

// watchWindow is how long the gates are watched after a switch: the
// longest `for`.
func watchWindow(g *metricgate.Gate) time.Duration {
	var d time.Duration
	for _, m := range g.Metrics {
		d = max(d, m.For.Duration)
	}
	return d
}

// watchMetrics watches the gates of a version that has just switched
// (rep and running are its switched report and process). A failed gate
// rolls the node back to the version it replaced; an agent stopping
// meanwhile leaves the new version running, with no verdict.
func (a *Agent) watchMetrics(ctx context.Context, t Target, before state.App, p prepared, running driver.Running, rep reconciler.AppReport) (reconciler.AppReport, error) {
	name, v := t.App.Name, t.Version
	a.log.Info("switched: watching its metric gates before it counts", "app", name, "version", v, "for", watchWindow(p.gate), "prometheus", redact.String(p.gate.Prometheus))
	err := p.gate.Watch(ctx)
	switch {
	case err == nil:
		a.log.Info("metric gates passed", "app", name, "version", v)
		if werr := a.saveApp(name, state.JournalWatched, func(s *state.App) { s.Watch = nil }); werr != nil {
			return rep, werr // logged and counted: the watch is resumed at the next pass
		}
		return rep, nil
	case ctx.Err() != nil:
		a.log.Warn("metric gates not finished: the agent is stopping; the new version keeps running", "app", name, "version", v)
		return rep, fmt.Errorf("metric gates of %s %s not finished: %w", name, v, context.Cause(ctx))
	}
	a.metrics.reconcileErrors.WithLabelValues("switch").Inc()
	a.log.Error("metric gate failed after the switch: rolling back on this node", "app", name, "version", v, "to", before.Active, "err", err)
	return a.revert(ctx, t, before, p, running, fmt.Errorf("metric gate failed after the switch to %s: %w", v, err))
}

// revert switches back from the version that failed its gate (running) to
// the one before it, and records v failed, as a failed switch is.
func (a *Agent) revert(ctx context.Context, t Target, before state.App, p prepared, running driver.Running, why error) (reconciler.AppReport, error) {
	name, v := t.App.Name, t.Version
	drv, err := a.driver(p.driver)
	if err == nil && before.Active != "" && !sameDriver(before.Driver, p.driver) {
		err = fmt.Errorf("%s ran under the %q driver and %s under %q: going back across drivers is not built", before.Active, before.Driver, v, p.driver)
	}
	if err == nil && before.Active == "" {
		err = drv.Stop(ctx, running) // nothing ran before: nothing runs
	} else if err == nil && sameDriver(before.Driver, p.driver) {
		var prev driver.Running
		if prev, err = a.switchBack(ctx, t, before, drv, running); err == nil {
			before.Running = &prev
		}
	}
	switch {
	case err == nil && before.Active == "":
		why = fmt.Errorf("%w; %s stopped it (nothing ran before)", why, a.cfg.Node)
	case err == nil:
		why = fmt.Errorf("%w; %s went back to %s", why, a.cfg.Node, before.Active)
	default:
		why = fmt.Errorf("%w; going back to %q failed, so %s keeps running: %w", why, before.Active, v, err)
		a.log.Error("rollback after a failed metric gate failed", "app", name, "version", v, "err", err)
	}
	now := a.cfg.Clock.Now()
	reason := why.Error()
	if werr := a.saveApp(name, state.JournalSwitchFailed, func(s *state.App) {
		if err == nil {
			s.Active, s.Previous, s.Driver, s.Running = before.Active, before.Previous, before.Driver, before.Running
			if s.Active == "" {
				s.Running = nil
			}
		}
		s.Step, s.Watch, s.LastError, s.ErrorTime, s.Since = nil, nil, reason, now, now
		s.Failed = &state.Failure{Version: v, Reason: reason, Time: now}
	}); werr != nil {
		why = errors.Join(why, werr)
	}
	return a.appReport(a.store.App(name), t, reconciler.AppFailed, reason), why
}

// switchBack switches from running (v) to before's version, journaled as a
// switch, and returns what runs then.
func (a *Agent) switchBack(ctx context.Context, t Target, before state.App, drv driver.Driver, running driver.Running) (driver.Running, error) {
	name, v := t.App.Name, t.Version
	back := Target{App: t.App, Version: before.Active, Vars: t.Vars}
	m, err := a.installedManifest(ctx, back)
	if err != nil {
		return driver.Running{}, err
	}
	rel := driver.Release{App: name, Version: before.Active, Dir: a.releaseDir(back), Manifest: m, Env: map[string]string{
		"RECONCILER_NODE": a.cfg.Node, "RECONCILER_APP": name, "RECONCILER_VERSION": before.Active}}
	check, err := healthCheck(back, rel)
	if err != nil {
		return driver.Running{}, err
	}
	if err := a.saveApp(name, state.JournalSwitching, func(s *state.App) {
		s.Step = &state.Step{Op: state.StepSwitch, From: v, To: before.Active, Started: a.cfg.Clock.Now()}
	}); err != nil {
		return driver.Running{}, err
	}
	prev, err := drv.Switch(ctx, &running, rel, a.healthFunc(versionGuard(check, v, before.Active)))
	if err != nil {
		return driver.Running{}, err
	}
	a.log.Info("rolled back on this node after a failed metric gate", "app", name, "from", v, "to", before.Active)
	return prev, nil
}

// monitorMetrics asks the gates once during a canary's monitor, at most
// once per the shortest interval: nil when they pass or are not due.
func (a *Agent) monitorMetrics(ctx context.Context, t Target) error {
	g, err := a.metricGate(t)
	if err != nil || g == nil {
		return err
	}
	every := g.Metrics[0].Interval.Duration
	for _, m := range g.Metrics {
		every = min(every, m.Interval.Duration)
	}
	now := a.cfg.Clock.Now()
	if last, ok := a.gateAsked[t.App.Name]; ok && now.Sub(last) < every {
		return nil
	}
	a.gateAsked[t.App.Name] = now
	if err := g.Check(ctx); err != nil {
		return fmt.Errorf("metric gate failed during the canary monitor of %s: %w", t.Version, err)
	}
	return nil
}

// resumeWatch finishes the metric watch of a version an earlier agent
// process switched to and stopped watching (it was killed or restarted):
// the gates are watched for what was left of their window, and at least
// evaluated once (an agent down past the window checks them now), before
// the version counts; a failed gate goes back to the version before it,
// as after a fresh switch. Without gates in the spec any more, the watch
// ends.
func (a *Agent) resumeWatch(ctx context.Context, t Target, st state.App) (reconciler.AppReport, error) {
	name, v, w := t.App.Name, t.Version, st.Watch
	p, err := a.prepare(ctx, t)
	if err != nil {
		err = fmt.Errorf("resume the metric watch of %s %s on %s: %w", name, v, a.cfg.Node, redact.Error(err))
		return a.appReport(st, t, reconciler.AppSwitching, err.Error()), err
	}
	if p.gate == nil {
		err := a.saveApp(name, state.JournalWatched, func(s *state.App) { s.Watch = nil })
		return a.steady(ctx, t, a.store.App(name)), err
	}
	left := w.Until.Sub(a.cfg.Clock.Now())
	for i := range p.gate.Metrics {
		m := &p.gate.Metrics[i]
		m.For.Duration = max(min(m.For.Duration, left), m.Interval.Duration)
	}
	a.log.Warn("the previous agent did not finish the metric watch of this version: resuming it", "app", name, "version", v, "left", left.Round(time.Second))
	before := state.App{Active: w.From, Previous: w.FromPrevious, Driver: w.FromDriver}
	return a.watchMetrics(ctx, t, before, p, *st.Running, a.appReport(st, t, reconciler.AppHealthy, ""))
}
