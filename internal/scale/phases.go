package scale

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// await waits until every node runs version, or the phase's timeout, or
// the rollout's record says it failed (the harness's reader reads it every
// 5 s: a failed rollout with no version to return to never converges).
func (h *harness) await(ctx context.Context, version, phase string) error {
	deadline := h.clock.NewTimer(h.opt.Timeout)
	defer deadline.Stop()
	tick := h.clock.NewTicker(5 * time.Second)
	defer tick.Stop()
	last, ticks := h.sample(), 0
	for {
		n, changed := h.log.running(version)
		if n >= h.opt.Nodes {
			return nil
		}
		select {
		case <-tick.C():
			if err := h.failed(ctx, version); err != nil {
				return fmt.Errorf("%s: %d of %d nodes run %s: %w", phase, n, h.opt.Nodes, version, err)
			}
			if ticks++; ticks%3 == 0 {
				now := h.sample()
				l := now.since(last)
				h.say("%s: %d of %d nodes run %s; last 15s: %s", phase, n, h.opt.Nodes, version, l)
				if len(l.EtcdByKind) > 0 { // what a stalled run asks of etcd, and what fails
					h.say("  etcd by kind: %s; ranges, and calls that failed (timed out, canceled): %s", byKind(l.EtcdByKind), byKind(l.EtcdDetail))
				}
				last = now
			}
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d nodes run %s: %w", phase, n, h.opt.Nodes, version, ctx.Err())
		case <-deadline.C():
			return fmt.Errorf("%s: only %d of %d nodes run %s after %s (a larger -timeout, or fewer -nodes)",
				phase, n, h.opt.Nodes, version, h.opt.Timeout)
		case <-changed:
		}
	}
}

// reported waits until every node's report is in the shared state.
func (h *harness) reported(ctx context.Context) error {
	deadline := h.clock.Now().Add(h.opt.Timeout)
	for i := 0; ; i++ {
		reports, err := h.reader.Reports(ctx)
		if err == nil && len(reports) >= h.opt.Nodes {
			return nil
		}
		if h.clock.Now().After(deadline) {
			return fmt.Errorf("start: %d of %d nodes reported after %s (last read: %v)", len(reports), h.opt.Nodes, h.opt.Timeout, err)
		}
		if i%8 == 7 {
			if err != nil {
				h.say("start: reading the reports: %v", err)
			} else {
				h.say("start: %d of %d nodes reported", len(reports), h.opt.Nodes)
			}
		}
		if err := h.clock.Sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
}

// failed reads the rollout record: an error when the latest rollout, to
// version, failed or was rolled back (its reason and the nodes recorded
// failed); nil when it goes on, or the record cannot be read now.
func (h *harness) failed(ctx context.Context, version string) error {
	events, err := h.reader.Record(ctx, appName)
	r := reconciler.Latest(events)
	if err != nil || r == nil || r.Target != version || (r.Outcome != reconciler.OutcomeFailed && r.Outcome != reconciler.OutcomeRolledBack) {
		return nil
	}
	var failed []string
	for node, why := range r.Failed {
		failed = append(failed, node+": "+why)
	}
	slices.Sort(failed)
	return fmt.Errorf("the rollout %s: %s; %d nodes recorded failed (none failed: simulated switches succeed): %s",
		r.Outcome, r.Reason, len(failed), strings.Join(first(failed, 5), "; "))
}

// settled waits until the latest rollout of the app targets version and
// has an outcome (its last node writes it just after its switch), and
// returns it.
func (h *harness) settled(ctx context.Context, version string) (*reconciler.Rollout, error) {
	deadline := h.clock.Now().Add(h.opt.Timeout)
	for {
		events, err := h.reader.Record(ctx, appName)
		r := reconciler.Latest(events)
		if err == nil && r != nil && r.Target == version && r.Outcome != reconciler.OutcomeNone {
			return r, nil
		}
		if h.clock.Now().After(deadline) {
			return r, fmt.Errorf("the rollout of %s %s has no outcome after %s (last read: %v)", appName, version, h.opt.Timeout, err)
		}
		if err := h.clock.Sleep(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
	}
}
