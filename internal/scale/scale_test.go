package scale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serveEtcdArg runs the test binary as the etcd server of a run with
// Options.EtcdCommand (TestMain).
const serveEtcdArg = "-serve-etcd"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == serveEtcdArg {
		if err := ServeEtcd(os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRolloutCompletes runs the harness for real, small: nodes in waves of
// 3 on each store (10 on etcd; 6 on Git, whose waves take seconds each:
// nodes learn a wave is done by polling), through a first deployment and a
// rolling upgrade (on etcd twice: the server in the process, and as its
// own, Options.EtcdCommand), and requires the invariants to hold and the
// figures to be there. Then
// it checks the same result against a wave bound one below what was
// measured: the check must fail (it is not a check that cannot).
func TestRolloutCompletes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs 10 agents against git http-backend and etcd")
	}
	for _, c := range []struct {
		store   string
		nodes   int
		command []string
	}{{StoreGit, 6, nil}, {StoreEtcd, 10, nil}, {StoreEtcd, 10, []string{os.Args[0], serveEtcdArg}}} {
		store, nodes := c.store, c.nodes
		t.Run(fmt.Sprintf("%s/process=%v", store, c.command != nil), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			res, err := Run(ctx, Options{Nodes: nodes, Wave: 3, Switch: 200 * time.Millisecond, Install: 20 * time.Millisecond,
				Store: store, Idle: time.Second, Timeout: 3 * time.Minute, GitPoll: 2 * time.Second, Dir: t.TempDir(), EtcdConns: 2,
				EtcdCommand: c.command})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Check(); err != nil {
				t.Fatalf("invariants: %v", err)
			}
			if waves := (nodes + 2) / 3; res.MaxSwitching < 1 || res.MaxSwitching > 3 || res.PlannedWaves != waves || res.Outcome != "completed" {
				t.Errorf("max switching %d (want 1..3), %d waves planned (want %d), outcome %q", res.MaxSwitching, res.PlannedWaves, waves, res.Outcome)
			}
			if res.RolloutLoad.Git.Total() == 0 || (store == StoreEtcd) != (res.RolloutLoad.Etcd > 0) {
				t.Errorf("requests counted during the rollout: Git %+v, etcd %d", res.RolloutLoad.Git, res.RolloutLoad.Etcd)
			}
			if store == StoreEtcd {
				var sum int64
				for k, n := range res.RolloutLoad.EtcdByKind {
					if k != "Txn lost" {
						sum += n
					}
				}
				if lost := res.RolloutLoad.EtcdByKind["Txn lost"]; sum != res.RolloutLoad.Etcd || res.RolloutLoad.EtcdByKind["Txn"] < lost || res.RolloutLoad.EtcdByKind["Range"] == 0 {
					t.Errorf("etcd requests by kind %v add up to %d, not the %d counted (or lost transactions outnumber them)", res.RolloutLoad.EtcdByKind, sum, res.RolloutLoad.Etcd)
				}
				// Every node read the record and the leases, and was woken.
				if b := res.RolloutLoad.EtcdReplyBytes; b["Range rollouts"] < int64(nodes)*100 || b["Watch events"] == 0 || b["Txn"] == 0 {
					t.Errorf("etcd reply bytes %v: want the records read (Range rollouts, at least 100 bytes a node), watch events and transactions", b)
				}
				if d := res.RolloutLoad.EtcdDetail; d["Range rollouts"] < int64(nodes) || d["Range rollouts"]+d["Range leases"] > res.RolloutLoad.EtcdByKind["Range"] {
					t.Errorf("etcd ranges by key space %v: want every node's reads of the record, among the %d ranges", d, res.RolloutLoad.EtcdByKind["Range"])
				}
				if (c.command != nil) != (res.RolloutLoad.EtcdCPU > 0) {
					t.Errorf("etcd server CPU %s with the server command %q: want it measured when, and only when, it runs apart", res.RolloutLoad.EtcdCPU, c.command)
				}
			}
			if res.SpecEvaluations != 3 || res.SpecLoads < int64(2*nodes) {
				t.Errorf("spec evaluated %d times for %d loads, want 3 (one per commit) for at least %d", res.SpecEvaluations, res.SpecLoads, 2*nodes)
			}
			if res.ReactionP99 <= 0 || res.Rollout < res.Ideal {
				t.Errorf("reaction p99 %s, rollout %s shorter than the ideal %s", res.ReactionP99, res.Rollout, res.Ideal)
			}
			var out bytes.Buffer
			if err := res.WriteText(&out); err != nil || !strings.Contains(out.String(), "invariants hold") {
				t.Errorf("text output (err %v):\n%s", err, out.String())
			}
			wrong := *res
			wrong.Wave = res.MaxSwitching - 1
			if err := wrong.Check(); err == nil || !strings.Contains(err.Error(), "more than the wave size") {
				t.Errorf("a wave bound of %d with %d switching at once passed the check: %v", wrong.Wave, res.MaxSwitching, err)
			}
		})
	}
}

// TestWebhookWakesTheFleet: with agents that poll once an hour, a fleet
// on etcd deploys and upgrades only because the harness calls one agent's
// webhook after each push, as a Git host does, and that agent publishes
// the tip key that wakes the others.
func TestWebhookWakesTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs 6 agents against git http-backend and etcd")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var heap bytes.Buffer
	res, err := Run(ctx, Options{Nodes: 6, Wave: 3, Switch: 100 * time.Millisecond, Install: 10 * time.Millisecond,
		Store: StoreEtcd, Webhooks: 1, Poll: time.Hour, Idle: time.Second, Timeout: time.Minute, Dir: t.TempDir(),
		HeapProfile: &heap})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Fatalf("invariants: %v", err)
	}
	if res.Webhooks != 1 || res.Outcome != "completed" {
		t.Errorf("webhooks %d, outcome %q", res.Webhooks, res.Outcome)
	}
	if heap.Len() == 0 {
		t.Error("no heap profile written")
	}
	t.Logf("reaction to a push p50 %s, p99 %s", res.ReactionP50, res.ReactionP99)
}

func TestCheckWaveBound(t *testing.T) {
	for _, c := range []struct {
		switching, wave int
		fails           bool
	}{
		{0, 1, false}, {3, 3, false}, {100, 100, false}, {1, 1000, false},
		{4, 3, true}, {2, 1, true}, {1001, 1000, true},
	} {
		err := CheckWaveBound(c.switching, c.wave)
		if (err != nil) != c.fails {
			t.Errorf("CheckWaveBound(%d, %d) = %v, want failure %v", c.switching, c.wave, err, c.fails)
		}
	}
}

func TestCheckFindsBrokenInvariants(t *testing.T) {
	ok := Result{Wave: 3, MaxSwitching: 3, RolloutMaxSwitching: 2, Outcome: "completed"}
	if err := ok.Check(); err != nil {
		t.Fatalf("a clean result fails the check: %v", err)
	}
	for name, c := range map[string]struct {
		broken func(*Result)
		want   string
	}{
		"live count over the wave": {func(r *Result) { r.MaxSwitching = 4 }, "4 nodes switched at once"},
		"intervals over the wave":  {func(r *Result) { r.RolloutMaxSwitching = 5 }, "from the switches' intervals"},
		"a node recorded failed":   {func(r *Result) { r.RecordedFailed = []string{"n00001: lease lost"} }, "1 nodes recorded failed"},
		"no outcome":               {func(r *Result) { r.Outcome = "" }, "outcome"},
		"an agent's error":         {func(r *Result) { r.AgentErrors = []string{"agent n00002: boom"} }, "stopped with an error"},
	} {
		r := ok
		c.broken(&r)
		if err := r.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check() = %v, want an error with %q", name, err, c.want)
		}
	}
}

func TestMaxConcurrent(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	iv := func(a, b int) Interval { return Interval{Start: at(a), End: at(b)} }
	for _, c := range []struct {
		ivs  []Interval
		want int
	}{
		{nil, 0},
		{[]Interval{iv(0, 10)}, 1},
		{[]Interval{iv(0, 10), iv(10, 20), iv(20, 30)}, 1}, // back to back: one at a time
		{[]Interval{iv(0, 10), iv(5, 15), iv(9, 20)}, 3},
		{[]Interval{iv(0, 100), iv(10, 20), iv(30, 40), iv(35, 50)}, 3},
	} {
		if got := MaxConcurrent(c.ivs); got != c.want {
			t.Errorf("MaxConcurrent(%v) = %d, want %d", c.ivs, got, c.want)
		}
	}
}

// TestFailureNamesHow: a failed call is counted by how it failed, so that
// a stalled run tells calls that timed out from passes that ended first.
func TestFailureNamesHow(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("read: %w", context.DeadlineExceeded), "timed out"},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "timed out"},
		{status.Error(codes.Canceled, "context canceled"), "canceled"},
		{context.Canceled, "canceled"},
		{status.Error(codes.ResourceExhausted, "etcdserver: too many requests"), "failed (ResourceExhausted)"},
		{errors.New("not a gRPC error"), "failed (Unknown)"},
	} {
		if got := failure(c.err); got != c.want {
			t.Errorf("failure(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
