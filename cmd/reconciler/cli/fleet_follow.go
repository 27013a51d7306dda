package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// followResult is what `upgrade --wait --output json` prints: the finished
// rollout's result in the original design's shape.
type followResult struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	*reconciler.Result
}

// follow watches the rollout of app to version started by commit until it
// ends, printing progress on stderr. On a terminal one line is redrawn
// every second (elapsed time, the countdown to the next wave); piped, a line
// is printed only when something changed. It returns nil when the rollout
// completes and exit status 1 when it fails or is rolled back.
func follow(ctx context.Context, e *env, h *fleetHandles, o *upgradeOptions, app, version, commit string) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	p := &progress{w: e.stderr, live: isTerminal(e.stderr), quiet: o.output != "text", start: time.Now()}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		st, done, err := rolloutNow(ctx, h, app, version, commit)
		if err == nil {
			p.show(st)
			if done {
				p.end()
				return finish(e, o, st, commit)
			}
		}
		select {
		case <-ctx.Done():
			p.end()
			return fmt.Errorf("rollout of %s %s not finished after %s (see reconciler status %s): %w", app, version, o.timeout, app, ctx.Err())
		case <-tick.C:
		}
	}
}

// progress prints the live progress of a rollout.
type progress struct {
	w     io.Writer
	live  bool // a terminal: redraw one line
	quiet bool // --output json: no progress
	start time.Time
	last  string // what the last printed line said, without times
	drawn bool   // a live line is on screen
}

// show prints st: redrawn on a terminal, once per change otherwise.
func (p *progress) show(st reconciler.Status) {
	if p.quiet {
		return
	}
	what, countdown := progressLine(st)
	line := fmt.Sprintf("[%5s] %s%s", time.Since(p.start).Round(time.Second), what, countdown)
	switch {
	case p.live:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
	case what != p.last:
		fmt.Fprintln(p.w, line)
	}
	p.last = what
}

// end finishes the live line.
func (p *progress) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// rolloutNow reads the status of the rollout of version; done once it has
// ended (a failure counts as ended once rolled back, or when nothing will
// roll it back).
func rolloutNow(ctx context.Context, h *fleetHandles, app, version, commit string) (reconciler.Status, bool, error) {
	_, fleet, err := h.tip(ctx)
	if err != nil {
		return reconciler.Status{}, false, err
	}
	spec, err := appOf(fleet, app)
	if err != nil {
		return reconciler.Status{}, false, err
	}
	record, err := h.shared.Record(ctx, app)
	if err != nil {
		return reconciler.Status{}, false, err
	}
	reports, err := h.reports(ctx)
	if err != nil {
		return reconciler.Status{}, false, err
	}
	leases, err := h.shared.Leases(ctx, app)
	if err != nil {
		return reconciler.Status{}, false, err
	}
	spec.Version = version // the status of our target, even after a rollback commit
	st := reconciler.StatusOf(spec, record, reports, leases, time.Now())
	if r := reconciler.Latest(record); r == nil || r.Target != version {
		st.State, st.Waves = "waiting for an agent to start it", nil
		return st, false, nil
	}
	switch st.State {
	case reconciler.StateComplete, reconciler.StateRolledBack, reconciler.StateSuperseded:
		return st, true, nil
	case reconciler.StateFailed:
		return st, !spec.Rollout.RollbackOnFail, nil
	}
	return st, false, nil
}

// progressLine is one line of progress: state, waves and nodes, and apart
// the countdown to the next wave (which changes every second).
func progressLine(st reconciler.Status) (what, countdown string) {
	var waves []string
	for k, w := range st.Waves {
		var nodes []string
		for _, n := range w {
			nodes = append(nodes, fmt.Sprintf("%s %s", n.Node, stateText(n.State)))
		}
		waves = append(waves, fmt.Sprintf("%s [%s]", reconciler.WaveName(k), strings.Join(nodes, ", ")))
	}
	what = strings.TrimSpace(fmt.Sprintf("%s %s: %s  %s", st.App, st.Target, st.State, strings.Join(waves, "  ")))
	if nw := st.NextWave; nw != nil {
		countdown = fmt.Sprintf("  (wave %d opens in %s)", nw.Wave, nw.OpensIn)
	}
	if a := st.Approval; a != nil {
		what += fmt.Sprintf("  (wave %d waits for approval: %s)", a.Wave, a.Command)
	}
	return what, countdown
}

func finish(e *env, o *upgradeOptions, st reconciler.Status, commit string) error {
	if commit == "" { // nothing was committed: the rollout already under way
		commit = st.Rollout
	}
	res := followResult{App: st.App, Version: st.Target, Commit: commit, State: st.State, Reason: st.Reason, Result: st.Result}
	if res.Result == nil {
		res.Result = &reconciler.Result{Nodes: []reconciler.NodeResult{}}
	}
	if o.output == "json" {
		if err := writeJSON(e, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "%s %s: %s: %d nodes, %d upgraded, %d failed, %d skipped\n",
			st.App, st.Target, st.State, res.Total, res.Upgraded, res.Failed, res.Skipped)
		if st.Reason != "" {
			fmt.Fprintf(e.stdout, "reason: %s\n", st.Reason)
		}
	}
	if st.State != reconciler.StateComplete {
		return &exitError{code: exitFailure}
	}
	return nil
}
