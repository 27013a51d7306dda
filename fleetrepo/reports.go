package fleetrepo

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/go-git/go-git/v5/plumbing"
)

// reportCache is the last report this handle wrote for a node.
type reportCache struct {
	tip     plumbing.Hash
	report  reconciler.NodeReport
	written time.Time // this handle's clock
}

// WriteReport commits r as the new tip of refs/reconciler/nodes/<r.Node>,
// with a one-line summary as the message. A report that differs from the
// last one this handle wrote only in Time is skipped, unless that one is
// older than SharedOptions.ReportRefresh. The ref is written by
// compare-and-swap: two agents using the same node name get a *ConflictError.
func (sh *Shared) WriteReport(ctx context.Context, r reconciler.NodeReport) error {
	if err := checkName("node", r.Node); err != nil {
		return fmt.Errorf("write node report: %w", err)
	}
	ref := plumbing.ReferenceName(NodesPrefix + r.Node)
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	now := sh.opts.Clock.Now()
	tip, err := sh.tip(ctx, ref)
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	if last, ok := sh.reports[r.Node]; ok && last.tip == tip && sameButTime(last.report, r) &&
		(sh.opts.ReportRefresh < 0 || now.Sub(last.written) < sh.opts.ReportRefresh) {
		return nil
	}
	next, err := sh.writeJSON(reportFile, r, tip, Summary(r))
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	if err := sh.s.cas(ctx, ref, tip, next); err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	sh.reports[r.Node] = reportCache{tip: next, report: r, written: now}
	return nil
}

func sameButTime(a, b reconciler.NodeReport) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// Summary is the one-line commit message of a node report, e.g.
// "node-eu-1: snake_game 1.1.0 healthy, web 2.0 upgrading to 2.1".
func Summary(r reconciler.NodeReport) string {
	var parts []string
	for _, app := range slices.Sorted(maps.Keys(r.Apps)) {
		a := r.Apps[app]
		p := strings.TrimSpace(fmt.Sprintf("%s %s %s", app, a.Version, a.State))
		if a.Target != "" && a.Target != a.Version {
			p += " to " + a.Target
		}
		parts = append(parts, strings.Join(strings.Fields(p), " "))
	}
	s := r.Node + ": "
	switch {
	case len(parts) == 0:
		s += "no apps"
	default:
		s += strings.Join(parts, ", ")
	}
	if r.SpecError != "" {
		s += "; spec error"
	}
	return s
}

// Reports returns every node's latest report, by node name: the inventory.
// A report ref that cannot be read is skipped and named by BadRefs.
func (sh *Shared) Reports(ctx context.Context) (map[string]reconciler.NodeReport, error) {
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	refs, bad, err := sh.currentReadable(ctx, NodesPrefix)
	if err != nil {
		return nil, fmt.Errorf("read node reports: %w", err)
	}
	defer sh.markGood(NodesPrefix, bad)
	out := make(map[string]reconciler.NodeReport, len(refs))
	for ref, h := range refs {
		var r reconciler.NodeReport
		if err := sh.readJSON(h, reportFile, &r); err != nil {
			sh.markBad(ref, h, fmt.Errorf("read node report: %w", err))
			bad[ref] = true
			continue
		}
		out[strings.TrimPrefix(ref.String(), NodesPrefix)] = r
	}
	return out, nil
}
