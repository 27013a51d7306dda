package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
