package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/fleetops/reconciler/agent/state"
)

// Recover adopts the workloads a previous agent process left running and
// settles a step it was killed in: drivers finish or undo their half-done
// work on Adopt (and report what runs through state.Store.RecordRunning);
// the agent then clears the step, and the next pass converges again.
// Run calls it before its first pass.
func (a *Agent) Recover(ctx context.Context) {
	apps := a.store.Get().Apps
	for _, name := range slices.Sorted(maps.Keys(apps)) {
		st := apps[name]
		if st.Step != nil {
			a.log.Warn("the previous agent was stopped mid-step", "app", name, "op", st.Step.Op, "from", st.Step.From, "to", st.Step.To)
		}
		if st.Running != nil {
			if err := a.adopt(ctx, name, st); err != nil {
				a.log.Error("adopt workload", "app", name, "version", st.Active, "err", err)
				if a.saveApp(name, state.JournalRecovered, func(s *state.App) { s.LastError = err.Error() }) != nil {
					continue // logged and counted; the step stays for the next start
				}
			}
		}
		if st.Step != nil {
			step := *st.Step
			_ = a.saveApp(name, state.JournalRecovered, func(s *state.App) { // a failure is logged and counted
				s.Step = nil
				s.LastError = fmt.Sprintf("agent restarted during %s from %q to %q; settled on %q", step.Op, step.From, step.To, s.Active)
			})
		}
	}
}

func (a *Agent) adopt(ctx context.Context, name string, st *state.App) error {
	drv, err := a.driver(st.Driver)
	if err != nil {
		return fmt.Errorf("adopt %s %s on %s: %w", name, st.Active, a.cfg.Node, err)
	}
	if err := drv.Adopt(ctx, *st.Running); err != nil {
		return fmt.Errorf("adopt %s %s on %s: %w", name, st.Active, a.cfg.Node, err)
	}
	a.log.Info("adopted workload", "app", name, "version", st.Active, "pids", st.Running.PIDs)
	return nil
}

func (a *Agent) releaseDir(t Target) string {
	return filepath.Join(a.cfg.StateDir, "releases", t.App.Name, t.Version)
}

// prune removes the installed releases of an app other than its active and
// previous versions (and leftovers of interrupted installs).
func (a *Agent) prune(name string) {
	st := a.store.App(name)
	dir := filepath.Join(a.cfg.StateDir, "releases", name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var doomed []string
	for _, e := range entries {
		if v := e.Name(); v != st.Active && v != st.Previous {
			doomed = append(doomed, v)
		}
	}
	if len(doomed) == 0 {
		return
	}
	// The state forgets the versions first: a state that still listed a
	// removed release would let a switch to it skip the download.
	if slices.ContainsFunc(st.Installed, func(v string) bool { return slices.Contains(doomed, v) }) &&
		a.saveApp(name, state.JournalPruned, func(s *state.App) {
			s.Installed = slices.DeleteFunc(s.Installed, func(v string) bool { return slices.Contains(doomed, v) })
		}) != nil {
		return // logged and counted; nothing removed, the next prune retries
	}
	var removed []string
	for _, v := range doomed {
		if err := os.RemoveAll(filepath.Join(dir, v)); err != nil {
			a.log.Warn("prune old release", "app", name, "version", v, "err", err)
			continue
		}
		removed = append(removed, v)
	}
	if len(removed) > 0 {
		a.log.Info("pruned old releases", "app", name, "versions", removed)
	}
}
