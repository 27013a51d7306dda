package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/reconciler"
)

// TestSharedEtcdTLSAndPrefix: the shared-state commands reach an etcd that
// serves TLS only and requires a client certificate through --etcd-ca,
// --etcd-cert and --etcd-key, read under --shared-prefix, and fail without
// the client certificate.
func TestSharedEtcdTLSAndPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an etcd server")
	}
	dir := t.TempDir()
	cluster, files, err := embedded.StartTLS(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	f := &fixture{t: t, dir: dir}
	flags := []string{"--shared", cluster.URL(), "--shared-prefix", "/fleet-a/", "--etcd-ca", files.CA,
		"--etcd-cert", files.Cert, "--etcd-key", files.Key}
	tlsCfg, err := (&sharedFlags{ca: files.CA, cert: files.Cert, key: files.Key}).tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	st, err := etcdstore.Open(etcdstore.Options{Endpoints: cluster.Endpoints(), Prefix: "/fleet-a/", TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Acquire(context.Background(), "web", 0, "node-1", "r1", time.Minute); err != nil {
		t.Fatal(err)
	}

	r := f.run(append([]string{"leases", "web", "--output", "json"}, flags...)...)
	if r.code != 0 {
		t.Fatalf("leases over TLS: exit %d\n%s", r.code, r.stderr)
	}
	var leases []reconciler.LeaseStatus
	if err := json.Unmarshal([]byte(r.stdout), &leases); err != nil || len(leases) != 1 || leases[0].Holder != "node-1" {
		t.Fatalf("leases = %s (%v): want web/0 held by node-1", r.stdout, err)
	}
	// Another prefix is another fleet: nothing there.
	var other []string
	for _, a := range append([]string{"leases", "--output", "json"}, flags...) {
		other = append(other, strings.Replace(a, "/fleet-a/", "/fleet-b/", 1))
	}
	if r = f.run(other...); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("leases under another prefix: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = f.run("leases", "break", "web", "0", "--shared", cluster.URL(), "--shared-prefix", "/fleet-a/", "--etcd-ca", files.CA)
	if r.code != 1 || !strings.Contains(r.stderr, cluster.URL()) {
		t.Fatalf("without a client certificate: exit %d, stderr %q: want a failure naming the store", r.code, r.stderr)
	}
	// A CA file that holds no certificate is named.
	bad := filepath.Join(dir, "bad.pem")
	must(t, os.WriteFile(bad, []byte("nothing"), 0o644))
	if r = f.run("leases", "--shared", cluster.URL(), "--etcd-ca", bad); r.code == 0 || !strings.Contains(r.stderr, "--etcd-ca "+bad+": no PEM certificate") {
		t.Fatalf("bad CA: exit %d %s", r.code, r.stderr)
	}
}

// TestStatusShowsStaleNodes: with the shared state in etcd, status marks a
// node whose agent stopped (its liveness lease expired) stale, in text and
// JSON, and not a node whose agent runs.
func TestStatusShowsStaleNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs git")
	}
	f := newFixture(t, "1.0.0")
	cluster := embedded.New(t, 1)
	ctx := context.Background()
	open := func(node string) *etcdstore.Store {
		st, err := etcdstore.Open(etcdstore.Options{Endpoints: cluster.Endpoints(), Identity: node, LivenessTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	n1, n2 := open("n1"), open("n2")
	defer n2.Close()
	err := n2.Append(ctx, "hello", func([]reconciler.Event) (*reconciler.Event, error) {
		return &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", By: "n2", Target: "1.0.0",
			Waves: [][]string{{"n1", "n2"}, {"n3"}}}, nil
	})
	must(t, err)
	for node, st := range map[string]*etcdstore.Store{"n1": n1, "n2": n2} {
		must(t, st.WriteReport(ctx, reconciler.NodeReport{Node: node, Time: time.Now(),
			Apps: map[string]reconciler.AppReport{"hello": {Version: "1.0.0", State: reconciler.AppHealthy}}}))
	}
	n1.Close() // n1's agent stops
	deadline := time.Now().Add(10 * time.Second)
	for {
		reps, err := n2.Reports(ctx)
		must(t, err)
		if reps["n1"].Stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n1 never turned stale")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := f.run("status", "hello", "--repo", f.repo, "--shared", cluster.URL(), "--output", "json")
	if r.code != 0 {
		t.Fatalf("status: exit %d\n%s", r.code, r.stderr)
	}
	var st struct{ Waves [][]reconciler.NodeStatus }
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Waves) != 2 {
		t.Fatalf("status JSON %s: %v", r.stdout, err)
	}
	stale := map[string]bool{}
	for _, w := range st.Waves {
		for _, n := range w {
			stale[n.Node] = n.Stale
		}
	}
	if !stale["n1"] || stale["n2"] {
		t.Fatalf("stale = %v, want n1 only:\n%s", stale, r.stdout)
	}
	r = f.run("status", "hello", "--repo", f.repo, "--shared", cluster.URL())
	if r.code != 0 || !strings.Contains(r.stdout, "n1  1.0.0") || strings.Count(r.stdout, "stale: agent not seen") != 1 {
		t.Fatalf("status text: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestAgentLivenessTTL: --liveness-ttl is the TTL of the etcd lease behind
// the agent's liveness key (fleets of thousands raise it so that a slow
// keep-alive does not turn nodes stale); it needs --shared etcd:// and a
// TTL a keep-alive every third of it can hold.
func TestAgentLivenessTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs agent passes and an etcd server")
	}
	f := newFixture(t, "1.0.0")
	cluster := embedded.New(t, 1)
	agentArgs := func(extra ...string) []string {
		return append([]string{"agent", "--once", "--repo", f.repo, "--node", "n1", "--state-dir", t.TempDir(),
			"--trust-key", f.pub, "--listen", ""}, extra...)
	}
	if r := f.run(agentArgs("--shared", cluster.URL(), "--liveness-ttl", "47s")...); r.code != 0 {
		t.Fatalf("agent --liveness-ttl 47s: exit %d\n%s", r.code, r.stderr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	resp, err := cli.Get(ctx, etcdstore.DefaultPrefix+"alive/n1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("liveness key of n1: %v %v", resp, err)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != 47 {
		t.Fatalf("liveness lease: %+v %v, want a granted TTL of 47 s", ttl, err)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"--shared", cluster.URL(), "--liveness-ttl", "1s"}},
		{[]string{"--shared", cluster.URL(), "--liveness-ttl", "-5s"}},
		{[]string{"--liveness-ttl", "40s"}}, // the Git store
	} {
		if r := f.run(agentArgs(tc.args...)...); r.code != exitUsage || !strings.Contains(r.stderr, "--liveness-ttl") {
			t.Errorf("agent %v: exit %d, want a usage error naming --liveness-ttl\n%s", tc.args, r.code, r.stderr)
		}
	}
}
