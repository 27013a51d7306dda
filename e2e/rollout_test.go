package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// TestRollingUpgrade: 5 nodes, batch size 2, over git http-backend, driven
// as an operator would: `reconciler upgrade --push --wait --output json`.
// Three waves; the lease refs' history shows never more than 2 holders at
// once; every node_done names a lease commit its node held; all end on 1.1.0.
func TestRollingUpgrade(t *testing.T) { rollingUpgrade(t, newFleet(t, 5)) }

// TestEtcdRollingUpgrade is TestRollingUpgrade with the shared state in
// etcd (--shared etcd://..., an embedded etcd the test starts).
func TestEtcdRollingUpgrade(t *testing.T) { rollingUpgrade(t, newEtcdFleet(t, 5)) }

func rollingUpgrade(t *testing.T, f *fleet) {
	pushed := time.Now()
	out, err := f.cli("upgrade", "web", "1.1.0", "--strategy", "rolling", "--batch-size", "2",
		"--push", "--wait", "--timeout", "2m", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Commit, State           string
		Total, Upgraded, Failed int
		Nodes                   []reconciler.NodeResult
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("upgrade --wait --output json: %v\n%s", err, out)
	}
	if res.State != reconciler.StateComplete || res.Total != 5 || res.Upgraded != 5 || res.Failed != 0 || len(res.Nodes) != 5 {
		t.Fatalf("result = %+v", res)
	}
	commit := res.Commit
	f.waitAll("1.1.0", 30*time.Second)
	t.Logf("rollout of 5 nodes in 3 waves took %s from the upgrade command", time.Since(pushed).Round(time.Millisecond))

	events := f.record("web")
	r := reconciler.Latest(events)
	if r == nil || r.ID != commit || r.Target != "1.1.0" || r.From != "1.0.0" {
		t.Fatalf("latest rollout = %+v, want 1.0.0 -> 1.1.0 started by %s", r, commit)
	}
	f.eventually(30*time.Second, func() (bool, string) {
		r = reconciler.Latest(f.record("web"))
		return r.Outcome == reconciler.OutcomeCompleted, "outcome " + r.Outcome
	}, "the rollout to complete")
	if len(r.Waves) != 3 || len(r.WaveDone) != 3 {
		t.Fatalf("waves %v, done %v: want 3 waves of 2, 2, 1", r.Waves, r.WaveDone)
	}
	holds := f.leaseHistory("web", commit)
	if n := maxConcurrent(holds); n > 2 {
		t.Fatalf("%d lease holders at once, batch size 2: %+v", n, holds)
	}
	for node, token := range r.Done {
		if token != "" && !heldBy(holds, node, token) {
			t.Errorf("%s recorded done under lease %s, which it never held", node, token)
		}
	}
	if len(r.Done) != 5 {
		t.Fatalf("done = %v, want all 5 nodes", r.Done)
	}
	// The read commands see the same shared state as the agents.
	out, err = f.cli("audit", "web", "--output", "json")
	var audit map[string][]string
	if err != nil || json.Unmarshal([]byte(out), &audit) != nil || len(audit["1.1.0"]) != 5 {
		t.Fatalf("audit web = %s, %v: want 5 nodes on 1.1.0", out, err)
	}
	out, err = f.cli("leases", "web", "--output", "json")
	var leases []reconciler.LeaseStatus
	if err != nil || json.Unmarshal([]byte(out), &leases) != nil || len(leases) < 2 {
		t.Fatalf("leases web = %s, %v: want the slots used", out, err)
	}
	for _, l := range leases {
		if l.State != reconciler.LeaseFree {
			t.Fatalf("lease %s/%d is %s after the rollout: want free", l.App, l.Slot, l.State)
		}
	}
	if refs := f.refs("refs/reconciler/"); f.etcd != nil && len(refs) > 0 {
		t.Fatalf("shared state in etcd, yet the fleet repo has shared refs: %v", refs)
	}
}

// TestPauseResume: pausing mid-rollout lets in-flight nodes finish and
// starts no new one; resuming completes the rollout.
func TestPauseResume(t *testing.T) {
	f := newFleet(t, 5)
	opts := specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 1, batchDelay: "2s"`}
	f.push(opts, "web 1.1.0, one node at a time")
	f.eventually(time.Minute, func() (bool, string) {
		n := f.upgraded("1.1.0")
		return n >= 1, "upgraded nodes: none yet"
	}, "the first node on 1.1.0")
	opts.paused = true
	f.push(opts, "pause web")
	f.eventually(30*time.Second, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r.Paused, "not paused yet"
	}, "the pause to be recorded")
	// In-flight nodes may finish (a switch lasts until the old version has
	// drained: it answers meanwhile); then nothing moves for a while.
	time.Sleep(3 * time.Second)
	f.eventually(30*time.Second, func() (bool, string) {
		for _, a := range f.agents {
			if r, err := a.Report(); err == nil && r.Apps["web"].State == reconciler.AppSwitching {
				return false, a.Name + " still switching"
			}
		}
		return true, ""
	}, "switches in flight to end")
	before := f.upgraded("1.1.0")
	time.Sleep(6 * time.Second) // three batch delays and more: a window, not a wait
	if after := f.upgraded("1.1.0"); after != before {
		t.Fatalf("%d nodes on 1.1.0 after pausing, %d six seconds later: a node started while paused", before, after)
	}
	if before == 5 {
		t.Fatal("the rollout finished before the pause took effect; nothing was tested")
	}
	out, err := f.cli("status", "web")
	if err != nil || !strings.Contains(out, "paused") {
		t.Fatalf("status while paused: %v\n%s", err, out)
	}
	opts.paused = false
	f.push(opts, "resume web")
	f.waitAll("1.1.0", 2*time.Minute)
	f.eventually(30*time.Second, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r.Outcome == reconciler.OutcomeCompleted, "outcome " + r.Outcome
	}, "the rollout to complete after resuming")
}

// TestKilledAgentSkipped: SIGKILL of an agent of the second wave before it
// starts; with onUnreachable skip and rollbackOnFail false the rollout
// skips it after nodeTimeout and completes; the dead node's workload keeps
// serving the old version and no other node is left unhealthy.
func TestKilledAgentSkipped(t *testing.T) { killedAgentSkipped(t, newFleet(t, 5)) }

// TestEtcdKilledAgentSkipped is TestKilledAgentSkipped with the shared
// state in etcd: nodeTimeout is noticed by time, not by a watch event.
func TestEtcdKilledAgentSkipped(t *testing.T) { killedAgentSkipped(t, newEtcdFleet(t, 5)) }

func killedAgentSkipped(t *testing.T, f *fleet) {
	victim := f.agents[2] // node-3: wave 2 of [1 2] [3 4] [5]
	victim.Kill()
	pushed := time.Now()
	commit := f.push(specOptions{version: "1.1.0",
		rollout: `strategy: "rolling", batchSize: 2, nodeTimeout: "4s", rollbackOnFail: false`}, "web 1.1.0")
	f.eventually(2*time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit && r.Outcome == reconciler.OutcomeCompleted, "not complete"
	}, "the rollout to complete without node-3")
	t.Logf("rollout with one dead node took %s", time.Since(pushed).Round(time.Millisecond))
	r := reconciler.Latest(f.record("web"))
	if _, skipped := r.Skipped["node-3"]; !skipped {
		t.Fatalf("node-3 not skipped: done %v failed %v skipped %v", r.Done, r.Failed, r.Skipped)
	}
	f.waitAll("1.1.0", 30*time.Second) // every live node
	if got, err := victim.Serving(); err != nil || got != "1.0.0" {
		t.Fatalf("the dead node's workload serves %q (%v), want 1.0.0", got, err)
	}
	// The node converges when it returns (after the rollout, under a lease).
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	f.waitAll("1.1.0", time.Minute)
}

// upgraded counts the nodes that serve v.
func (f *fleet) upgraded(v string) int {
	n := 0
	for _, a := range f.agents {
		if got, err := a.Serving(); err == nil && got == v {
			n++
		}
	}
	return n
}

// firstServingAll polls every node until each has answered with version v at
// least once and returns how long after since the last of them first did, or
// -1 if some node had not within limit of since.
func (f *fleet) firstServingAll(v string, since time.Time, limit time.Duration) time.Duration {
	seen := make([]bool, len(f.agents))
	left := len(f.agents)
	for time.Since(since) < limit {
		for i, a := range f.agents {
			if seen[i] {
				continue
			}
			if got, err := a.Serving(); err == nil && got == v {
				seen[i] = true
				left--
			}
		}
		if left == 0 {
			return time.Since(since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}

// TestCanaryRollback: a broken version fails on the canary; a rollback
// commit lands on main with its trailers, every node ends on the previous
// version, and history shows both commits.
func TestCanaryRollback(t *testing.T) { canaryRollback(t, newFleet(t, 5)) }

// TestEtcdCanaryRollback is TestCanaryRollback with the shared state in
// etcd: the rollback commit still goes to Git, history reads the record
// from etcd.
func TestEtcdCanaryRollback(t *testing.T) { canaryRollback(t, newEtcdFleet(t, 5)) }

func canaryRollback(t *testing.T, f *fleet) {
	bad := f.push(specOptions{version: "1.2.0",
		rollout: `strategy: "canary", batchSize: 2, canary: {count: 1, monitor: "3s"}`}, "web 1.2.0")
	var rollback string
	f.eventually(2*time.Minute, func() (bool, string) {
		msg, err := fleetlab.Git(f.bare, "log", "-1", "--format=%H%n%B", "main")
		if err != nil || !strings.Contains(msg, "Reconciler-Rollback-Of: "+bad) {
			return false, "no rollback commit yet: " + msg
		}
		rollback = strings.SplitN(msg, "\n", 2)[0]
		return true, ""
	}, "the rollback commit on main")
	msg, _ := fleetlab.Git(f.bare, "log", "-1", "--format=%B", rollback)
	for _, want := range []string{"Reconciler-App: web", "Reconciler-From: 1.2.0", "Reconciler-To: 1.0.0",
		"Reconciler-Node: node-1", "Reconciler-Reason: "} {
		if !strings.Contains(msg, want) {
			t.Errorf("rollback commit lacks %q:\n%s", want, msg)
		}
	}
	f.waitAll("1.0.0", time.Minute)
	r := reconciler.Latest(f.record("web"))
	if r.ID != bad || r.Outcome != reconciler.OutcomeRolledBack || r.Rollback != rollback {
		t.Fatalf("rollout %s: outcome %q, rollback %q", r.ID, r.Outcome, r.Rollback)
	}
	if len(r.Done) != 0 {
		t.Fatalf("nodes upgraded past the failed canary: %v", r.Done)
	}
	out, err := f.cli("history", "web", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, bad) || !strings.Contains(out, rollback) || !strings.Contains(out, `"rollback"`) {
		t.Fatalf("history lacks the upgrade or the rollback:\n%s", out)
	}
	// versions: 1.0.0 runs everywhere, 1.2.0 is remembered as failed.
	out, err = f.cli("versions", "web", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []struct {
		Version, Failed  string
		Nodes, Installed []string
	}
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("versions: %v\n%s", err, out)
	}
	got := map[string]int{}
	for _, v := range vs {
		got[v.Version] = len(v.Nodes)
		if v.Version == "1.2.0" && v.Failed == "" {
			t.Errorf("versions does not remember why 1.2.0 failed: %+v", v)
		}
	}
	if got["1.0.0"] != 5 || got["1.2.0"] != 0 {
		t.Fatalf("versions = %s", out)
	}
}

// TestKilledAgentRollsBack: SIGKILL of an agent of the second wave; with
// onUnreachable fail its silence fails the rollout after nodeTimeout, an
// agent writes the rollback commit and every live node returns to 1.0.0.
func TestKilledAgentRollsBack(t *testing.T) { killedAgentRollsBack(t, newFleet(t, 5)) }

// TestEtcdKilledAgentRollsBack is TestKilledAgentRollsBack with the shared
// state in etcd; the rollback commit still goes to Git.
func TestEtcdKilledAgentRollsBack(t *testing.T) { killedAgentRollsBack(t, newEtcdFleet(t, 5)) }

func killedAgentRollsBack(t *testing.T, f *fleet) {
	victim := f.agents[2] // node-3, in wave 2
	victim.Kill()
	bad := f.push(specOptions{version: "1.1.0",
		rollout: `strategy: "rolling", batchSize: 2, nodeTimeout: "4s", onUnreachable: "fail"`}, "web 1.1.0")
	f.eventually(2*time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == bad && r.Outcome == reconciler.OutcomeRolledBack, "not rolled back yet"
	}, "the rollout to be rolled back")
	r := reconciler.Latest(f.record("web"))
	if _, failed := r.Failed["node-3"]; !failed || r.FailedBy != "node-3" {
		t.Fatalf("failed %v (by %q), want node-3", r.Failed, r.FailedBy)
	}
	msg, err := fleetlab.Git(f.bare, "log", "-1", "--format=%B", "main")
	if err != nil || !strings.Contains(msg, "Reconciler-Rollback-Of: "+bad) || !strings.Contains(msg, "Reconciler-To: 1.0.0") {
		t.Fatalf("tip of main is not the rollback of %s: %v\n%s", bad, err, msg)
	}
	f.waitAll("1.0.0", time.Minute) // wave 1 came back; no live node left unhealthy
	if got, err := victim.Serving(); err != nil || got != "1.0.0" {
		t.Fatalf("the dead node's workload serves %q (%v), want 1.0.0", got, err)
	}
}

// TestLateJoiner: a node that appears mid-rollout (not in the frozen plan)
// waits for the rollout to end, then converges under a lease.
func TestLateJoiner(t *testing.T) {
	f := newFleet(t, 3)
	commit := f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 1, batchDelay: "2s"`}, "web 1.1.0")
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit, "not started"
	}, "the rollout to start")
	late, err := f.lab.StartAgent("node-late", f.url, "--poll", "1s", "--lease-ttl", "3s")
	if err != nil {
		t.Fatal(err)
	}
	f.agents = append(f.agents, late)
	f.waitAll("1.1.0", 2*time.Minute)
	r := reconciler.Latest(f.record("web"))
	if r.WaveOf("node-late") >= 0 {
		t.Fatalf("node-late was put in the frozen plan %v", r.Waves)
	}
	if r.Outcome != reconciler.OutcomeCompleted {
		t.Fatalf("outcome %q", r.Outcome)
	}
	// It switched only after the rollout ended: its lease came after the
	// completed event, by the holders' own clocks.
	var completed time.Time
	for _, e := range f.record("web") {
		if e.Rollout == commit && e.Type == reconciler.EventCompleted {
			completed = e.Time
		}
	}
	held := false
	for _, h := range f.leaseHistory("web", commit) {
		if h.holder != "node-late" {
			continue
		}
		held = true
		if h.from.Before(completed) {
			t.Fatalf("node-late took a lease at %v, before the rollout completed at %v", h.from, completed)
		}
	}
	if !held {
		t.Fatal("node-late converged without a lease")
	}
}
