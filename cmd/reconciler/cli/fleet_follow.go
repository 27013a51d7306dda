package cli

import (
	"context"
	"fmt"
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
// ends, printing progress whenever it changes. It returns nil when the
// rollout completes and exit status 1 when it fails or is rolled back.
func follow(ctx context.Context, e *env, h *fleetHandles, o *upgradeOptions, app, version, commit string) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	start, last := time.Now(), ""
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		st, done, err := rolloutNow(ctx, h, app, version, commit)
		if err == nil {
			if line := progressLine(st, time.Since(start)); line != last && o.output == "text" {
				fmt.Fprintln(e.stderr, line)
				last = line
			}
			if done {
				return finish(e, o, st, commit)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollout of %s %s not finished after %s (see reconciler status %s): %w", app, version, o.timeout, app, ctx.Err())
		case <-tick.C:
		}
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

// progressLine is one line of live progress: state, waves, nodes.
func progressLine(st reconciler.Status, elapsed time.Duration) string {
	var waves []string
	for k, w := range st.Waves {
		var nodes []string
		for _, n := range w {
			nodes = append(nodes, fmt.Sprintf("%s %s", n.Node, n.State))
		}
		waves = append(waves, fmt.Sprintf("wave %d [%s]", k+1, strings.Join(nodes, ", ")))
	}
	return fmt.Sprintf("[%5s] %s %s: %s  %s", elapsed.Round(time.Second), st.App, st.Target, st.State, strings.Join(waves, "  "))
}

func finish(e *env, o *upgradeOptions, st reconciler.Status, commit string) error {
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
		return &exitError{exitFailure}
	}
	return nil
}
