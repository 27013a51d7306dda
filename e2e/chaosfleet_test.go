package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/faultproxy"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// faultFleet is a fleet whose agents reach the Git server through a fault
// proxy each, over a Git server that can be restarted and stall pushes.
type faultFleet struct {
	*fleet
	git     *fleetlab.GitServer
	proxies map[string]*faultproxy.Proxy // by node
	ttl     time.Duration
	base    int64 // Mono when the fleet was up: event times are shown from here
}

// newFaultFleet starts n agents on version 1.0.0 (all at once), each
// through its own proxy, with env in their environment (and so in their
// workloads'), and returns once every node serves 1.0.0.
func newFaultFleet(t *testing.T, n int, ttl time.Duration, env ...string) *faultFleet {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts agents and a Git server")
	}
	f := &faultFleet{fleet: &fleet{t: t, lab: lab.Fleet(t.TempDir())}, proxies: map[string]*faultproxy.Proxy{}, ttl: ttl}
	for i := 1; i <= n; i++ {
		f.nodes = append(f.nodes, fmt.Sprintf("node-%d", i))
	}
	f.bare = gittest.NewBare(t, f.spec(specOptions{version: "1.0.0", rollout: `strategy: "all_at_once"`}))
	git, err := fleetlab.ServeGit(f.bare)
	if err != nil {
		t.Fatal(err)
	}
	f.git, f.url = git, git.URL()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		if t.Failed() {
			f.dumpLogs()
		}
		_ = f.lab.Close()
		for _, p := range f.proxies {
			p.Close()
		}
		cancel()
		_ = git.Close()
	})
	for _, name := range f.nodes {
		p, err := faultproxy.New(ctx, "127.0.0.1:0", git.Addr())
		if err != nil {
			t.Fatal(err)
		}
		f.proxies[name] = p
		a, err := f.lab.NewAgent(name, git.URLVia(p.Addr()), "--poll", "1s", "--lease-ttl", ttl.String())
		if err != nil {
			t.Fatal(err)
		}
		a.Env = env
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		f.agents = append(f.agents, a)
	}
	f.waitAll("1.0.0", 2*time.Minute)
	f.base = fleetlab.Mono()
	return f
}

func (f *faultFleet) agent(node string) *fleetlab.Agent {
	for _, a := range f.agents {
		if a.Name == node {
			return a
		}
	}
	f.t.Fatalf("no agent %s", node)
	return nil
}

// at is a Mono time in seconds since the fleet was up, for logs.
func (f *faultFleet) at(mono int64) string {
	return fmt.Sprintf("%.2fs", float64(mono-f.base)/1e9)
}

func (f *faultFleet) logf(format string, args ...any) {
	f.t.Helper()
	f.t.Logf("[%s] "+format, append([]any{f.at(fleetlab.Mono())}, args...)...)
}

// holders are the nodes holding a lease slot of rollout now, by the lease
// refs in the bare repository.
func (f *faultFleet) holders(rollout string) []string {
	var out []string
	for _, ref := range f.refs("refs/reconciler/leases/web/") {
		b, err := fleetlab.Git(f.bare, "show", ref+":lease.json")
		if err != nil {
			continue
		}
		var doc struct{ Holder, Rollout string }
		if jsonUnmarshal(b, &doc) == nil && doc.Holder != "" && doc.Rollout == rollout {
			out = append(out, doc.Holder)
		}
	}
	return out
}

// midSwitch reports whether the node runs two workload processes now.
func (f *faultFleet) midSwitch(node string) bool {
	ev, err := fleetlab.ReadEvents(f.agent(node).Events)
	if err != nil {
		f.t.Fatal(err)
	}
	live := 0
	for _, l := range fleetlab.Lives(ev, fleetlab.Mono()) {
		if !l.Ended && !l.Vanished {
			live++
		}
	}
	return live >= 2
}

// appState is the node's report of app web ("" when the agent does not answer).
func (f *faultFleet) appState(node string) string {
	rep, err := f.agent(node).Report()
	if err != nil {
		return ""
	}
	return rep.Apps["web"].State
}

// switches are every node's switches to version target since since (Mono),
// from the workloads' event logs.
func (f *faultFleet) switches(target string, since int64) []fleetlab.Switch {
	f.t.Helper()
	now := fleetlab.Mono()
	var out []fleetlab.Switch
	for _, a := range f.agents {
		ev, err := fleetlab.ReadEvents(a.Events)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, s := range fleetlab.Switches(a.Name, fleetlab.Lives(ev, now)) {
			if s.From >= since && s.Candidate == target {
				out = append(out, s)
			}
		}
	}
	return out
}

// judgeSwitching fails when more than batch nodes switched to target at once.
func (f *faultFleet) judgeSwitching(target string, since int64, batch int) (max int) {
	f.t.Helper()
	sw := f.switches(target, since)
	n, at, who := fleetlab.MaxConcurrent(sw)
	f.t.Logf("switches to %s: %d, at most %d at once (batch size %d): %s", target, len(sw), n, batch, fleetlab.Describe(sw, f.base))
	if n > batch {
		msg := fmt.Sprintf("%d nodes switching at once at %s, batch size %d: %s", n, f.at(at), batch, fleetlab.Describe(who, f.base))
		for _, s := range who {
			f.logEvents(s.Node)
		}
		f.t.Error(msg)
	}
	return n
}

// judgeRequests fails on any failed request to a node in strict, and logs
// the others' failures.
func (f *faultFleet) judgeRequests(res map[string]fleetlab.NodeLoad, strict map[string]bool) {
	f.t.Helper()
	for _, node := range f.nodes {
		r := res[node]
		f.t.Logf("load %s: %d answered %v, %d failed", node, r.OK, r.Versions, len(r.Failures))
		for i, fl := range r.Failures {
			if i == 3 {
				break
			}
			line := fmt.Sprintf("%s request at %s failed: %s", node, f.at(fl.Mono), fl.Err)
			if strict[node] {
				f.t.Error(line)
			} else {
				f.t.Log(line)
			}
		}
		if r.OK == 0 {
			f.t.Errorf("%s answered no request", node)
		}
	}
}

var versionField = regexp.MustCompile(`version:\s*"([^"]+)"`)

// tipVersion is the version web's spec names on main now.
func (f *faultFleet) tipVersion() string {
	f.t.Helper()
	spec, err := fleetlab.Git(f.bare, "show", "main:fleet.cue")
	if err != nil {
		f.t.Fatal(err)
	}
	m := versionField.FindStringSubmatch(spec)
	if m == nil {
		f.t.Fatalf("no version in main:fleet.cue:\n%s", spec)
	}
	return m[1]
}

// judgeRollbacks checks that every rolled_back event names a commit on
// main that says which commit it rolls back, and that a rollout recorded
// rolled back has such a commit on main; a rolled_back event with no commit
// fails (an agent that lost the race to write it recorded the rollback
// first; issue 17, "also decide").
func (f *faultFleet) judgeRollbacks(events []reconciler.Event) (n int) {
	f.t.Helper()
	rolledBack := map[string]bool{}
	for _, e := range events {
		if e.Type != reconciler.EventRolledBack {
			continue
		}
		n++
		rolledBack[e.Rollout] = true
		if e.RollbackCommit == "" {
			f.t.Errorf("rolled_back of %s by %s names no rollback commit (reason %q)", e.Rollout[:8], e.By, e.Reason)
			continue
		}
		if _, err := fleetlab.Git(f.bare, "merge-base", "--is-ancestor", e.RollbackCommit, "main"); err != nil {
			f.t.Errorf("rollback commit %s of %s is not on main: %v", e.RollbackCommit, e.Rollout, err)
			continue
		}
		msg, err := fleetlab.Git(f.bare, "log", "-1", "--format=%B", e.RollbackCommit)
		if err != nil || !strings.Contains(msg, "Reconciler-Rollback-Of: "+e.Rollout) {
			f.t.Errorf("rollback commit %s lacks Reconciler-Rollback-Of: %s (%v):\n%s", e.RollbackCommit, e.Rollout, err, msg)
		}
	}
	for id := range rolledBack {
		out, err := fleetlab.Git(f.bare, "log", "--format=%H", "--grep", "Reconciler-Rollback-Of: "+id, "main")
		if err != nil || out == "" {
			f.t.Errorf("rollout %s is recorded rolled back, and no commit on main says Reconciler-Rollback-Of: %s (%v)", id[:8], id, err)
		}
	}
	return n
}

// logEvents logs the workload event lines of nodes, relative to base.
func (f *faultFleet) logEvents(nodes ...string) {
	f.t.Helper()
	for _, n := range nodes {
		ev, err := fleetlab.ReadEvents(f.agent(n).Events)
		if err != nil {
			f.t.Log(err)
			continue
		}
		var b strings.Builder
		for _, e := range ev {
			fmt.Fprintf(&b, " %s:%s/%s/%d", f.at(e.Mono), e.Event, e.Version, e.PID)
		}
		f.t.Logf("events of %s:%s", n, b.String())
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// judgeFenced fails when a node began switching to target after the
// record says it failed in rollout: its lease was expired and may have been taken over, so the
// switch ran outside any lease. Record times are the writers' wall clocks,
// on this machine the same clock as the workloads'.
func (f *faultFleet) judgeFenced(events []reconciler.Event, rollout, target string, since int64) {
	f.t.Helper()
	failedAt := map[string]time.Time{}
	for _, e := range events {
		if e.Rollout == rollout && e.Type == reconciler.EventNodeFailed {
			if _, seen := failedAt[e.Node]; !seen {
				failedAt[e.Node] = e.Time
			}
		}
	}
	wallNow, monoNow := time.Now(), fleetlab.Mono()
	for _, s := range f.switches(target, since) {
		at, failed := failedAt[s.Node]
		began := wallNow.Add(time.Duration(s.From - monoNow))
		if !failed || began.Before(at) {
			continue
		}
		msg := fmt.Sprintf("%s began switching to %s at %s, %s after it was recorded failed in %s",
			s.Node, target, f.at(s.From), began.Sub(at).Round(time.Millisecond), rollout[:8])
		f.logEvents(s.Node)
		f.t.Error(msg)
	}
}

// judgeOneProcess fails when a node runs other than one workload process
// at the end: a leftover old version or candidate beside the current one.
func (f *faultFleet) judgeOneProcess() {
	f.t.Helper()
	now := fleetlab.Mono()
	for _, a := range f.agents {
		ev, err := fleetlab.ReadEvents(a.Events)
		if err != nil {
			f.t.Fatal(err)
		}
		var live []string
		for _, l := range fleetlab.Lives(ev, now) {
			if !l.Ended && !l.Vanished {
				live = append(live, fmt.Sprintf("%s (pid %d)", l.Version, l.PID))
			}
		}
		if len(live) != 1 {
			f.t.Errorf("%s runs %d workload processes at the end: %v", a.Name, len(live), live)
			f.logEvents(a.Name)
		}
	}
}
