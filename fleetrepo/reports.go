package fleetrepo

import (
	"context"
	"encoding/json"
	"errors"
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
// compare-and-swap. When the chain moved under this handle (another writer
// of the node's report: two agents with one node name) the report is
// written all the same and a *DuplicateNodeError returned.
func (sh *Shared) WriteReport(ctx context.Context, r reconciler.NodeReport) error {
	ctx = sh.fresh(ctx) // a write reads its ref afresh, never from a Snapshot
	if err := checkName("node", r.Node); err != nil {
		return fmt.Errorf("write node report: %w", err)
	}
	ref := plumbing.ReferenceName(NodesPrefix + r.Node)
	sh.s.mu.Lock()
	defer sh.s.mu.Unlock()
	now := sh.opts.Clock.Now()
	last, ok := sh.reports[r.Node]
	unchanged := ok && sameButTime(last.report, r) && (sh.opts.ReportRefresh < 0 || now.Sub(last.written) < sh.opts.ReportRefresh)
	if unchanged && sh.s.gitDir == "" {
		// Unchanged and fresh, on a server: no request at all. A second
		// writer of the chain is found at this handle's next write (a
		// change, or the refresh). A repository on this machine costs no
		// server: its chain is read every time, so both writers find out
		// at once.
		return nil
	}
	tip, err := sh.tip(ctx, ref)
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	if unchanged && last.tip == tip {
		return nil
	}
	dup := sh.foreignWriter(r.Node, tip)
	next, err := sh.writeJSON(reportFile, r, tip, Summary(r)+"\n\n"+instanceTrailer+": "+sh.instance)
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	if err := sh.s.cas(ctx, ref, tip, next); err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	sh.reports[r.Node] = reportCache{tip: next, report: r, written: now}
	if dup != nil {
		return dup // written all the same: the other writer sees this one
	}
	return nil
}

// instanceTrailer names the handle that wrote a node report: a random id
// per Shared, so that two agents with one node name tell each other apart.
const instanceTrailer = "Reconciler-Instance"

// DuplicateNodeError means another agent writes this node's report: two
// agents run with one node name. An agent that gets it must stop acting
// (both would drive the same node's rollout steps and leases).
type DuplicateNodeError struct {
	Node     string
	Commit   string // the other agent's report commit
	Instance string // the other writer's instance id ("" when it has none)
}

func (e *DuplicateNodeError) Error() string {
	return fmt.Sprintf("another agent writes the report of node %s (commit %.12s, instance %q, not this agent's): two agents share the node name %s; stop one of them, or give each its own --node, then restart this one",
		e.Node, e.Commit, e.Instance, e.Node)
}

// Is makes errors.Is(err, ErrDuplicateNode) true.
func (e *DuplicateNodeError) Is(target error) bool { return target == ErrDuplicateNode }

// ErrDuplicateNode is matched by *DuplicateNodeError.
var ErrDuplicateNode = errors.New("two agents with one node name")

// foreignWriter returns a *DuplicateNodeError when another agent writes
// node's report: the chain moved under this handle, which wrote it before
// and is its only writer, or, at this handle's first write, the tip is a
// fresh report of another instance. Caller holds mu.
func (sh *Shared) foreignWriter(node string, tip plumbing.Hash) error {
	last, ok := sh.reports[node]
	if tip.IsZero() || (ok && tip == last.tip) {
		return nil
	}
	c, err := sh.s.repo.CommitObject(tip)
	if err != nil {
		return nil
	}
	inst := trailer(c.Message, instanceTrailer)
	if inst == sh.instance {
		return nil // this handle's own write (answer lost), or its instance's before a restart
	}
	if !ok {
		// This handle's first write: another instance's report is another
		// agent with this node name if it is fresh, one written within two
		// report refreshes (a live agent rewrites its report at least that
		// often). An older one is a predecessor that is gone (a node whose
		// state directory, and so its instance, was lost).
		var prev reconciler.NodeReport
		if sh.readJSON(tip, reportFile, &prev) != nil || inst == "" ||
			sh.opts.Clock.Now().Sub(prev.Time) >= 2*max(sh.opts.ReportRefresh, time.Minute) {
			return nil
		}
	}
	return &DuplicateNodeError{Node: node, Commit: tip.String(), Instance: inst}
}

// trailer returns the value of the last "key: value" line of msg.
func trailer(msg, key string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(lines[i], key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
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
