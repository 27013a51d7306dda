package agent

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
)

// TipStatus is the tracked branch as this node sees it, on /healthz: what
// it applies, how fresh that is, and why a newer tip is refused. A frozen
// or unreachable Git server shows as a growing SinceFetch, not silence.
type TipStatus struct {
	Accepted   string    `json:"accepted,omitempty"`  // the accepted tip, applied
	CommitTime time.Time `json:"commitTime,omitzero"` // its committer time
	Fetched    time.Time `json:"fetched,omitzero"`    // when the branch was last read from the repository
	SinceFetch float64   `json:"sinceFetchSeconds"`   // seconds since then (since the agent started, before)
	Untrusted  string    `json:"untrusted,omitempty"` // "untrusted: <commit>: <why>" while the tip is refused
	Refused    string    `json:"refused,omitempty"`   // why the branch's tip is not applied (untrusted, moved backwards)
}

// tipWatch follows the accepted tip, the last fetch and refusals, for
// /healthz, the node report and the reconciler_tip_* metrics. The loop
// writes it; the HTTP server and Prometheus read it: mu guards it.
type tipWatch struct {
	now     func() time.Time
	started time.Time
	log     *slog.Logger

	mu     sync.Mutex
	status TipStatus

	info       *prometheus.GaugeVec
	commitTime prometheus.Gauge
	fetched    prometheus.Gauge
	untrusted  prometheus.Gauge
	refusals   *prometheus.CounterVec
}

func newTipWatch(reg prometheus.Registerer, log *slog.Logger, now func() time.Time) *tipWatch {
	w := &tipWatch{now: now, started: now(), log: log,
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "reconciler_tip_info",
			Help: "The accepted tip of the tracked branch (value 1, commit in the label)."}, []string{"commit"}),
		commitTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "reconciler_tip_commit_timestamp_seconds",
			Help: "Committer time of the accepted tip."}),
		fetched: prometheus.NewGauge(prometheus.GaugeOpts{Name: "reconciler_tip_fetch_timestamp_seconds",
			Help: "When the tracked branch was last read from the repository."}),
		untrusted: prometheus.NewGauge(prometheus.GaugeOpts{Name: "reconciler_tip_untrusted",
			Help: "1 while the tip of the tracked branch is refused as untrusted (unsigned, unknown key, bad signature)."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reconciler_tip_refusals_total",
			Help: "Tips of the tracked branch refused, by reason: untrusted, backwards."}, []string{"reason"}),
	}
	since := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "reconciler_tip_since_fetch_seconds",
		Help: "Seconds since the tracked branch was last read from the repository (since the agent started, before)."},
		func() float64 { return w.snapshot().SinceFetch })
	reg.MustRegister(w.info, w.commitTime, w.fetched, w.untrusted, w.refusals, since)
	return w
}

// snapshot is the status now.
func (w *tipWatch) snapshot() TipStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	from := st.Fetched
	if from.IsZero() {
		from = w.started
	}
	st.SinceFetch = w.now().Sub(from).Seconds()
	return st
}

// observe records one fetch: commit is the tip in force, err Fetch's error.
// It reports whether err refuses the branch's tip (untrusted, backwards),
// which it logs as an ERROR once per refused tip, not every pass. Only the
// agent's loop calls it.
func (w *tipWatch) observe(d Desired, commit plumbing.Hash, err error) (refusal bool) {
	var ue *fleetrepo.UntrustedError
	var nd *fleetrepo.NotDescendantError
	reached := err == nil || errors.As(err, &ue) || errors.As(err, &nd)
	moved := !commit.IsZero() && commit.String() != w.snapshot().Accepted
	var when time.Time
	if moved { // read outside mu: View waits for the Desired's fetches and pushes
		when = commitTime(d, commit, w.log)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if moved {
		w.accept(commit, when)
	}
	if !reached {
		return false // unreachable: what was refused stays refused
	}
	w.status.Fetched = w.now()
	w.fetched.Set(float64(w.status.Fetched.UnixNano()) / 1e9)
	refused, untrusted, reason := "", "", ""
	switch {
	case ue != nil:
		refused, untrusted, reason = ue.Error(), ue.Summary(), "untrusted"
	case nd != nil:
		refused, reason = nd.Error(), "backwards"
	}
	if refused != "" && refused != w.status.Refused {
		w.refusals.WithLabelValues(reason).Inc()
		w.log.Error("refusing the tip of the tracked branch: keeping the last accepted one and everything it runs",
			"reason", reason, "err", refused)
	}
	w.status.Refused, w.status.Untrusted = refused, untrusted
	w.untrusted.Set(boolGauge(untrusted != ""))
	return refused != ""
}

// accept records a newly accepted tip and its commit time. Caller holds mu.
func (w *tipWatch) accept(commit plumbing.Hash, when time.Time) {
	w.status.Accepted, w.status.CommitTime = commit.String(), when
	w.info.Reset()
	w.info.WithLabelValues(commit.String()).Set(1)
	if !when.IsZero() {
		w.commitTime.Set(float64(when.UnixNano()) / 1e9)
	}
}

// commitTime is the committer time of commit in the Desired's cache (zero,
// logged, when it cannot be read).
func commitTime(d Desired, commit plumbing.Hash, log *slog.Logger) time.Time {
	var when time.Time
	err := d.View(func(r *git.Repository) error {
		c, err := r.CommitObject(commit)
		if err == nil {
			when = c.Committer.When
		}
		return err
	})
	if err != nil {
		log.Warn("read the accepted tip's commit time", "commit", commit.String(), "err", err)
	}
	return when
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// reportFetch puts a fetch error in the node report: an untrusted tip in
// Untrusted, anything else in SpecError.
func reportFetch(r *reconciler.NodeReport, err error) {
	var ue *fleetrepo.UntrustedError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		r.Untrusted = ue.Summary()
	default:
		r.SpecError = err.Error()
	}
}

// rollbackMark reports whether commit (the tip applied) is a rollback of
// app, read once per tip; a commit that cannot be read is no rollback
// (logged), so the rollout keeps its waves.
func (a *Agent) rollbackMark(commit plumbing.Hash, app string) *reconciler.RollbackMark {
	if a.marksAt != commit || a.marks == nil {
		a.marksAt, a.marks = commit, map[string]*reconciler.RollbackMark{}
	}
	if m, ok := a.marks[app]; ok {
		return m
	}
	var m *reconciler.RollbackMark
	err := a.cfg.Desired.View(func(r *git.Repository) error {
		var err error
		m, err = fleetrepo.RollbackMarkOf(r, commit, app)
		return err
	})
	if err != nil {
		a.log.Warn("read whether the tip rolls an app back: treating it as an upgrade", "app", app, "commit", commit.String(), "err", err)
	}
	a.marks[app] = m
	return m
}
