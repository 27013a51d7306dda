// Package e2e runs whole fleets: several real agent processes against a real
// Git server (git http-backend over loopback) with signed releases of the
// example workload, and checks the rollout invariants from the outside.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// lab is built once: the binaries and the signed releases 1.0.0, 1.1.0, a
// broken 1.2.0 (its health check fails) and 1.3.0, which answers half its
// requests with 500 while its health check passes, of app "web".
var lab *fleetlab.Lab

func TestMain(m *testing.M) {
	os.Exit(fleetlab.Main(fleetlab.Options{Root: "..",
		Versions: []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"}, Broken: map[string]bool{"1.2.0": true},
		VersionEnv: map[string]map[string]string{"1.3.0": {"WORKLOAD_ERROR_RATE": "0.5"}}},
		func(l *fleetlab.Lab) int { lab = l; return m.Run() }))
}

// fleet is one test's fleet: a bare repo served over HTTP and its agents.
type fleet struct {
	t      testing.TB
	bare   string // the repository on disk
	url    string // its http-backend URL
	lab    *fleetlab.Lab
	agents []*fleetlab.Agent
	nodes  []string
	// etcd, when set, holds the shared state (agents and CLI run with
	// --shared etcd://...); otherwise it is in the bare repo's refs.
	etcd *embedded.Cluster
}

// specOptions shape the web app's spec.
type specOptions struct {
	version string
	rollout string // CUE fields inside rollout: {...}
	health  string // more CUE fields inside health: {...}
	paused  bool
}

func (f *fleet) spec(o specOptions) map[string]string {
	var nodes strings.Builder
	for _, n := range f.nodes {
		fmt.Fprintf(&nodes, "nodes: %q: labels: tier: \"web\"\n", n)
	}
	return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet

%s
apps: web: {
	version: %q
	artifact: url: "file://%s/web-\(version).tar.gz"
	rollout: {%s}
	health: {
		http:       "http://127.0.0.1:${PORT}/health"
		retries:    2
		retryDelay: "200ms"
		%s
	}
	paused: %v
}
`, nodes.String(), o.version, lab.Releases, o.rollout, o.health, o.paused)}
}

// newFleet serves a fleet repo at version 1.0.0 (all at once) and starts n
// agents; it returns once every node serves 1.0.0.
func newFleet(t testing.TB, n int, agentFlags ...string) *fleet {
	return startFleet(t, nil, n, agentFlags...)
}

// newEtcdFleet is newFleet with the shared state in an embedded etcd that
// the test starts: the agents and the CLI get --shared etcd://...
func newEtcdFleet(t testing.TB, n int, agentFlags ...string) *fleet {
	return startFleet(t, embedded.New(t, 1), n, agentFlags...)
}

func startFleet(t testing.TB, etcd *embedded.Cluster, n int, agentFlags ...string) *fleet {
	f := &fleet{t: t, lab: lab.Fleet(t.TempDir()), etcd: etcd}
	for i := 1; i <= n; i++ {
		f.nodes = append(f.nodes, fmt.Sprintf("node-%d", i))
	}
	f.bare = gittest.NewBare(t, f.spec(specOptions{version: "1.0.0", rollout: `strategy: "all_at_once"`}))
	f.url = gittest.Serve(t, f.bare)
	t.Cleanup(func() {
		if t.Failed() {
			f.dumpLogs()
		}
		_ = f.lab.Close()
	})
	flags := append([]string{"--poll", "1s", "--lease-ttl", "3s"}, agentFlags...)
	flags = append(flags, f.sharedFlags()...)
	for _, name := range f.nodes {
		a, err := f.lab.StartAgent(name, f.url, flags...)
		if err != nil {
			t.Fatal(err)
		}
		f.agents = append(f.agents, a)
	}
	f.waitAll("1.0.0", 90*time.Second)
	return f
}

func (f *fleet) push(o specOptions, msg string) string {
	return gittest.PushFiles(f.t, f.url, "main", f.spec(o), msg)
}

// waitAll waits until every live node runs version v, healthy, and serves it.
func (f *fleet) waitAll(v string, within time.Duration) {
	f.t.Helper()
	f.eventually(within, func() (bool, string) {
		for _, a := range f.agents {
			if !a.Running() {
				continue
			}
			if ok, why := runs(a, v); !ok {
				return false, why
			}
		}
		return true, ""
	}, "every node on "+v)
}

func runs(a *fleetlab.Agent, v string) (bool, string) {
	rep, err := a.Report()
	if err != nil {
		return false, err.Error()
	}
	app := rep.Apps["web"]
	if app.Version != v || app.State != reconciler.AppHealthy {
		return false, fmt.Sprintf("%s: web %q %s %s", a.Name, app.Version, app.State, app.Error)
	}
	if got, err := a.Serving(); err != nil || got != v {
		return false, fmt.Sprintf("%s serves %q (%v)", a.Name, got, err)
	}
	return true, ""
}

// eventually polls cond until it holds or within passes.
func (f *fleet) eventually(within time.Duration, cond func() (bool, string), what string) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(200 * time.Millisecond)
	}
	f.t.Fatalf("timed out after %s waiting for %s; last: %s", within, what, last)
}

// sharedFlags name the fleet's shared state for the agents and the CLI.
func (f *fleet) sharedFlags() []string {
	if f.etcd == nil {
		return nil
	}
	return []string{"--shared", f.etcd.URL()}
}

// record reads the app's rollout record from the bare repo with git (or
// from etcd).
func (f *fleet) record(app string) []reconciler.Event {
	f.t.Helper()
	if f.etcd != nil {
		rec, err := f.etcdStore().Record(context.Background(), app)
		if err != nil {
			f.t.Fatal(err)
		}
		return rec
	}
	var out []reconciler.Event
	for _, c := range f.chain("refs/reconciler/rollouts/" + app) {
		var e reconciler.Event
		f.show(c, "event.json", &e)
		out = append(out, e)
	}
	return out
}

// chain lists a ref's commits, oldest first (empty when the ref is absent).
func (f *fleet) chain(ref string) []string {
	out, err := fleetlab.Git(f.bare, "rev-list", "--reverse", ref)
	if err != nil || out == "" {
		return nil
	}
	return strings.Fields(out)
}

func (f *fleet) show(commit, file string, v any) {
	f.t.Helper()
	out, err := fleetlab.Git(f.bare, "show", commit+":"+file)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		f.t.Fatalf("%s:%s: %v", commit, file, err)
	}
}

func (f *fleet) refs(prefix string) []string {
	out, err := fleetlab.Git(f.bare, "for-each-ref", "--format=%(refname)", prefix)
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Fields(out)
}

// cli runs the reconciler binary against the fleet and returns its stdout.
func (f *fleet) cli(args ...string) (string, error) {
	cmd := exec.Command(lab.Reconciler, append(append(args, "--repo", f.url), f.sharedFlags()...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("reconciler %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

func (f *fleet) dumpLogs() {
	for _, a := range f.agents {
		b, _ := os.ReadFile(a.Log)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		f.t.Logf("--- %s (last lines of %s)\n%s", a.Name, filepath.Base(a.Log), strings.Join(lines, "\n"))
	}
}

// holdInterval is one holder's time on one lease slot, from the lease refs.
type holdInterval struct {
	slot, holder, token string
	from, to            time.Time
}

// leaseHistory walks every lease ref of app and returns who held which
// slot when for rollout, by the holders' own writes: acquired until the next
// commit that changed the holder (a release, break or takeover).
func (f *fleet) leaseHistory(app, rollout string) []holdInterval {
	var out []holdInterval
	for ref, writes := range f.leaseWrites(app) {
		var open *holdInterval
		for _, doc := range writes {
			c := doc.Token
			if doc.Holder != "" && doc.Rollout != rollout {
				doc.Holder = "" // another rollout's: counts as free here
			}
			end := doc.Acquired
			if doc.Holder == "" {
				end = doc.Renewed
			}
			if open != nil && open.holder != doc.Holder {
				open.to = end
				out = append(out, *open)
				open = nil
			}
			if doc.Holder != "" && open == nil {
				open = &holdInterval{slot: ref, holder: doc.Holder, from: doc.Acquired}
			}
			if open != nil && doc.Holder == open.holder {
				open.token += " " + c
			}
		}
		if open != nil {
			open.to = time.Now()
			out = append(out, *open)
		}
	}
	return out
}

// maxConcurrent is the largest number of intervals that overlap.
func maxConcurrent(iv []holdInterval) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, i := range iv {
		edges = append(edges, edge{i.from, 1}, edge{i.to, -1})
	}
	sort.Slice(edges, func(a, b int) bool {
		if edges[a].at.Equal(edges[b].at) {
			return edges[a].delta < edges[b].delta
		}
		return edges[a].at.Before(edges[b].at)
	})
	n, best := 0, 0
	for _, e := range edges {
		n += e.delta
		best = max(best, n)
	}
	return best
}

// leaseWrite is one write of a lease slot; Token is its commit (Git) or
// revision (etcd).
type leaseWrite struct {
	Holder, Rollout   string
	Acquired, Renewed time.Time
	Token             string
}

// leaseWrites returns every write of each of app's lease slots, by slot,
// oldest first: the lease refs' commits, or the etcd keys' revisions.
func (f *fleet) leaseWrites(app string) map[string][]leaseWrite {
	out := map[string][]leaseWrite{}
	if f.etcd != nil {
		ctx := context.Background()
		st := f.etcdStore()
		leases, err := st.Leases(ctx, app)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, l := range leases {
			hist, err := st.LeaseHistory(ctx, app, l.Slot, 0)
			if err != nil {
				f.t.Fatal(err)
			}
			slot := fmt.Sprintf("%s/%d", app, l.Slot)
			for _, h := range slices.Backward(hist) {
				out[slot] = append(out[slot], leaseWrite{Holder: h.Holder, Rollout: h.Rollout, Acquired: h.Acquired, Renewed: h.Renewed, Token: h.Token})
			}
		}
		return out
	}
	for _, ref := range f.refs("refs/reconciler/leases/" + app + "/") {
		for _, c := range f.chain(ref) {
			var doc leaseWrite
			f.show(c, "lease.json", &doc)
			doc.Token = c
			out[ref] = append(out[ref], doc)
		}
	}
	return out
}

// etcdStore opens the fleet's etcd shared state, as an operator's tool would.
func (f *fleet) etcdStore() *etcdstore.Store {
	f.t.Helper()
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: f.etcd.Endpoints(), Identity: "e2e"})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { st.Close() })
	return st
}

// heldBy reports whether token is one of node's lease commits.
func heldBy(iv []holdInterval, node, token string) bool {
	for _, i := range iv {
		if i.holder == node && slices.Contains(strings.Fields(i.token), token) {
			return true
		}
	}
	return false
}
