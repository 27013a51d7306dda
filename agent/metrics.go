package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetops/reconciler/agent/state"
)

// Upgrade results, the "result" label of the upgrade metrics.
const (
	ResultSuccess    = "success"     // the new version runs, healthy
	ResultRolledBack = "rolled_back" // it failed; the previous version runs
	ResultFailed     = "failed"      // it failed; nothing ran before, nothing runs
)

// metrics are the agent's Prometheus metrics, on its own registry.
type metrics struct {
	upgradeSeconds  *prometheus.HistogramVec
	upgrades        *prometheus.CounterVec
	active          prometheus.Gauge
	reconcileErrors *prometheus.CounterVec
	fetchSeconds    prometheus.Histogram
	swaps           *prometheus.CounterVec
	blocked         *prometheus.GaugeVec
	stateWrites     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		upgradeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reconciler_upgrade_duration_seconds",
			Help:    "Time from the start of a switch to its outcome (install excluded).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"app", "result"}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_upgrades_total",
			Help: "Upgrades (switches) by app and result: success, rolled_back, failed.",
		}, []string{"app", "result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reconciler_upgrades_active",
			Help: "Switches in progress on this node.",
		}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_reconcile_errors_total",
			Help: "Reconcile errors by stage: fetch, spec, decide, install, switch, stop, report.",
		}, []string{"stage"}),
		fetchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reconciler_git_fetch_duration_seconds",
			Help:    "Time to fetch the tip of the tracked branch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_swaps_total",
			Help: "Switches begun, by app and how the release swaps: hot, stop-then-start (no listen sockets: requests are refused meanwhile), hooks, in-place.",
		}, []string{"app", "swap"}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reconciler_blocked",
			Help: "1 while an app on this node cannot move until a person acts (a push the shared state refuses, refused credentials); its report says why.",
		}, []string{"app"}),
		stateWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_state_write_errors_total",
			Help: "Local state writes that failed, by step: install, download, switch, switched, switch_failed, switch_interrupted, recover, prune. The step they guard stopped.",
		}, []string{"step"}),
	}
	reg.MustRegister(m.upgradeSeconds, m.upgrades, m.active, m.reconcileErrors, m.fetchSeconds, m.swaps, m.blocked, m.stateWrites)
	// The error counters exist at zero from the start: a dashboard or an
	// alert on rate(...) sees a series before the first error, not a gap.
	for _, stage := range []string{"fetch", "spec", "decide", "install", "switch", "stop", "report"} {
		m.reconcileErrors.WithLabelValues(stage)
	}
	for _, step := range []state.JournalStep{state.JournalInstallFailed, state.JournalInstalled, state.JournalSwitching,
		state.JournalSwitched, state.JournalWatched, state.JournalSwitchFailed, state.JournalSwitchInterrupted, state.JournalRecovered, state.JournalPruned} {
		m.stateWrites.WithLabelValues(string(step))
	}
	return m
}
