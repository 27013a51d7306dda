package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// reportCache is the last report this Store wrote for a node.
type reportCache struct {
	rev     int64 // mod revision of the report key it wrote
	report  reconciler.NodeReport
	written time.Time
}

func (s *Store) nodesPrefix() string { return s.opts.Prefix + "nodes/" }
func (s *Store) alivePrefix() string { return s.opts.Prefix + "alive/" }

// WriteReport puts r at nodes/<node> by a transaction on the key's revision,
// and in the same transaction alive/<node> (this Store's instance id) bound
// to its liveness lease, kept alive while the Store is open. As on Git, a
// report that differs from the last one written only in Time is skipped,
// without a request, unless older than ReportRefresh; when another Store wrote the node's
// report since this one did (two agents with one node name) the report is
// written all the same and a *fleetrepo.DuplicateNodeError returned. A
// handle's first write reads the keys first (another instance's liveness
// key says it is alive); every later one is one transaction, on the
// revision it wrote, that reads them only when that compare fails.
func (s *Store) WriteReport(ctx context.Context, r reconciler.NodeReport) error {
	if err := spec.CheckName("node", r.Node); err != nil {
		return fmt.Errorf("write node report: %w", err)
	}
	key, alive := s.nodesPrefix()+r.Node, s.alivePrefix()+r.Node
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	last, wrote := s.reports[r.Node]
	if wrote && sameButTime(last.report, r) && s.alive() &&
		(s.opts.ReportRefresh < 0 || now.Sub(last.written) < s.opts.ReportRefresh) {
		// Nothing to write (the liveness lease is kept alive), and
		// nothing read: an agent writes its report at every pass, and
		// a read each time was a third of a rollout's
		// requests (docs/scale.md). Another agent writing this node's
		// report is found at the next change or refresh.
		return nil
	}
	if wrote {
		// The key is where this handle left it unless another writer
		// moved it: one transaction, guarded by the revision it wrote.
		// Reading it first, at every write of every agent, was half of
		// the report writes' requests (docs/scale.md).
		rev, err := s.putReport(ctx, key, alive, last.rev, r)
		if err == nil {
			s.reports[r.Node] = reportCache{rev: rev, report: r, written: now}
			return nil
		}
		if !errors.Is(err, fleetrepo.ErrConflict) {
			return fmt.Errorf("write node report %s: %w", r.Node, err)
		}
		// Moved under this handle: read who wrote it, below.
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).Then(clientv3.OpGet(key), clientv3.OpGet(alive)).Commit()
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, s.classify("read node report from", err))
	}
	var cur int64
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		cur = kvs[0].ModRevision
	}
	var writer string
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
		writer = string(kvs[0].Value)
	}
	var dup error
	// The chain moved under this handle; or, at its first write, another
	// instance's liveness key is there: that agent is alive (the key lives
	// with its etcd lease), so two agents share this node name.
	if writer != "" && writer != s.instance && (!wrote && cur != 0 || wrote && cur != 0 && cur != last.rev) {
		dup = &fleetrepo.DuplicateNodeError{Node: r.Node, Commit: fmt.Sprintf("revision %d", cur), Instance: writer}
	}
	rev, err := s.putReport(ctx, key, alive, cur, r)
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	s.reports[r.Node] = reportCache{rev: rev, report: r, written: now}
	return dup
}

// putReport writes the report and liveness keys, granting (again) the
// liveness lease when there is none or it expired. Caller holds mu.
func (s *Store) putReport(ctx context.Context, key, alive string, expected int64, r reconciler.NodeReport) (int64, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("encode report: %w", err)
	}
	data = []byte(redact.String(string(data)))
	cond := clientv3.Compare(clientv3.ModRevision(key), "=", expected)
	if expected == 0 {
		cond = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	for attempt := 0; ; attempt++ {
		id, err := s.livenessLease(ctx)
		if err != nil {
			return 0, err
		}
		octx, cancel := s.op(ctx)
		resp, err := s.cli.Txn(octx).If(cond).
			Then(clientv3.OpPut(key, string(data)), clientv3.OpPut(alive, s.instance, clientv3.WithLease(id))).
			Else(clientv3.OpGet(key)).Commit()
		cancel()
		if err != nil && attempt == 0 && isLeaseGone(err) {
			s.liveness = 0 // expired while this agent was stopped or cut off: grant another
			continue
		}
		if err != nil {
			return 0, s.classify("write node report to", err)
		}
		if !resp.Succeeded {
			var actual int64
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
				actual = kvs[0].ModRevision
			}
			return 0, &ConflictError{URL: s.url, Key: key, Expected: expected, Actual: actual}
		}
		return resp.Header.Revision, nil
	}
}

func isLeaseGone(err error) bool {
	return err != nil && strings.Contains(err.Error(), rpctypes.ErrLeaseNotFound.Error())
}

// livenessLease returns this Store's liveness lease, granting it on first
// use, and keeps it alive (keepAlive). Caller holds mu.
func (s *Store) livenessLease(ctx context.Context) (clientv3.LeaseID, error) {
	if s.alive() {
		return s.liveness, nil
	}
	id := s.liveness
	if id == 0 {
		octx, cancel := s.op(ctx)
		defer cancel()
		g, err := s.cli.Grant(octx, int64((s.opts.LivenessTTL+time.Second-1)/time.Second))
		if err != nil {
			return 0, s.classify("grant the liveness lease on", err)
		}
		id = g.ID
	}
	ch, err := s.cli.KeepAlive(s.ctx, id)
	if err != nil {
		return 0, s.classify("keep the liveness lease alive on", err)
	}
	s.liveness, s.keptAlive = id, id
	s.wg.Go(func() { s.keepAlive(id, ch) })
	return id, nil
}

// keepAlive drains the keep-alive channel of lease id until Close. The
// client closes the channel when no answer came for a TTL: on a loaded
// server that answer is late, not lost (the server renewed the lease), so
// the keep-alive is started again at once while answers still came on
// the last one. Granting a new lease instead, at every report write after
// a late keep-alive, was 3,413 grants in flight at once in a 10,000-node
// run, each a raft write, each leaving a lease to expire (docs/scale.md).
// A keep-alive that got no answer at all (the lease is gone, or the server
// is unreachable) is left stopped: the next report write asks again, and
// a lease etcd says is gone is replaced there (putReport).
func (s *Store) keepAlive(id clientv3.LeaseID, ch <-chan *clientv3.LeaseKeepAliveResponse) {
	defer func() {
		s.mu.Lock()
		if s.keptAlive == id { // not replaced by another lease meanwhile
			s.keptAlive = 0
		}
		s.mu.Unlock()
	}()
	for {
		answered := false
		for range ch {
			answered = true
		}
		s.mu.Lock()
		current := s.keptAlive == id
		s.mu.Unlock()
		if !answered || !current || s.ctx.Err() != nil {
			return
		}
		var err error
		if ch, err = s.cli.KeepAlive(s.ctx, id); err != nil {
			return
		}
	}
}

// alive reports whether this Store has a liveness lease and keeps it
// alive. Caller holds mu.
func (s *Store) alive() bool { return s.liveness != 0 && s.keptAlive == s.liveness }

func sameButTime(a, b reconciler.NodeReport) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	a.Stale, b.Stale = false, false
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// Reports returns every node's latest report, by node name, with Stale set
// on each whose agent's liveness key expired (the agent stopped, or lost
// etcd, for longer than its LivenessTTL). An unreadable report is skipped
// and named by BadRefs.
//
// It takes no lock of the Store's: the read shares no state with writes
// (bad keys have their own lock), and a lease renewal must never queue
// behind a read of the whole fleet (at 1,000 nodes one is a large range).
func (s *Store) Reports(ctx context.Context) (map[string]reconciler.NodeReport, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Txn(octx).Then(clientv3.OpGet(s.nodesPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(s.alivePrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return nil, s.classify("read node reports from", err)
	}
	alive := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		alive[strings.TrimPrefix(string(kv.Key), s.alivePrefix())] = true
	}
	out := map[string]reconciler.NodeReport{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		key := string(kv.Key)
		node := strings.TrimPrefix(key, s.nodesPrefix())
		if spec.CheckName("node", node) != nil {
			continue
		}
		var r reconciler.NodeReport
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			s.markBad(key, kv.ModRevision, fmt.Errorf("read node report: %w", err))
			continue
		}
		s.markGood(key)
		r.Stale = !alive[node]
		out[node] = r
	}
	return out, nil
}

// CountReports implements rollout.ReportCounter: how many node report keys
// there are, by a count-only range (the server walks its index; no value
// is read or sent). A node about to start an app's first rollout spreads
// its start by it.
func (s *Store) CountReports(ctx context.Context) (int, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, s.nodesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, s.classify("count node reports in", err)
	}
	return int(resp.Count), nil
}
