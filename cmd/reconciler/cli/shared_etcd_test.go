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
