package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

// releases is a directory of signed releases and the key set trusting them.
type releases struct {
	dir  string
	keys *signing.KeySet
	key  *signing.PrivateKey
}

func newReleases(t *testing.T) *releases {
	t.Helper()
	priv, pub, err := signing.GenerateKeyPair(nil)
	must(t, err)
	k, err := signing.LoadPrivateKey(priv, nil)
	must(t, err)
	keys := &signing.KeySet{}
	must(t, keys.Add("k.pub", pub))
	return &releases{dir: t.TempDir(), keys: keys, key: k}
}

// pack writes app-v.tar.gz and its .sig and returns the artifact's path.
func (r *releases) pack(t *testing.T, app, v string) string {
	t.Helper()
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, release.ManifestName), []byte(`{"command": ["bin/app"]}`), 0o644))
	must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "bin", "app"), []byte("#!/bin/sh\n"), 0o755))
	var art bytes.Buffer
	must(t, release.Pack(src, app, v, &art))
	sig, err := signing.Sign(bytes.NewReader(art.Bytes()), r.key)
	must(t, err)
	p := filepath.Join(r.dir, app+"-"+v+".tar.gz")
	must(t, os.WriteFile(p, art.Bytes(), 0o644))
	must(t, os.WriteFile(p+".sig", sig, 0o644))
	return p
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// trickleServer sends one byte every interval and never ends; it counts
// the requests for artifacts (not signatures, which it serves from sigs).
func trickleServer(t *testing.T, interval time.Duration, sig []byte, hits *atomic.Int32) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".sig") {
			w.Write(sig)
			return
		}
		hits.Add(1)
		for {
			if _, err := w.Write([]byte{0x1f}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(interval):
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(srv.CloseClientConnections)
	return srv
}

// runAgent runs a with Run until the test ends.
func runAgent(t *testing.T, a *Agent) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop within 10s of its context's end")
		}
	})
}

// waitFor polls the agent's last report until cond holds.
func waitFor(t *testing.T, a *Agent, d time.Duration, what string, cond func(reconciler.NodeReport) bool) reconciler.NodeReport {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if r := a.last.Load(); r != nil && cond(*r) {
			return *r
		}
		if time.Now().After(deadline) {
			var r reconciler.NodeReport
			if p := a.last.Load(); p != nil {
				r = *p
			}
			t.Fatalf("after %v, not %s; last report: %+v", d, what, r.Apps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSlowDownloadHoldsUpNothing: app "slow" fetches from a server that
// sends a byte every 2 s (never stalling, never ending); app "fast" is
// installed and switched meanwhile, and a corrective commit moving "slow"
// to a good artifact cancels the download and is applied at once, long
// before the fetch deadline. Before, the pass sat in slow's download:
// "fast" never switched and the corrective commit was not seen.
func TestSlowDownloadHoldsUpNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a download from a slow HTTP server")
	}
	rel := newReleases(t)
	good := rel.pack(t, "slow", "1.0.0")
	fast := rel.pack(t, "fast", "1.0.0")
	var hits atomic.Int32
	sig, err := os.ReadFile(good + ".sig")
	must(t, err)
	srv := trickleServer(t, 2*time.Second, sig, &hits)
	spec := func(slowURL string) map[string]string {
		return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet
nodes: n1: {}
apps: slow: {version: "1.0.0", artifact: url: %q, health: exec: ["bin/app"]}
apps: fast: {version: "1.0.0", artifact: url: "file://%s", health: exec: ["bin/app"]}
`, slowURL, fast)}
	}
	repo := gittest.NewBare(t, spec(srv.URL+"/slow-1.0.0.tar.gz"))
	desired, err := fleetrepo.OpenDesired(context.Background(), fleetrepo.DesiredOptions{URL: repo})
	must(t, err)
	fetcher, err := release.NewFetcher(release.Options{CacheDir: t.TempDir(), Timeout: 10 * time.Minute, StallTimeout: 30 * time.Second})
	must(t, err)
	drv := &fakeDriver{fail: map[string]bool{}}
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Poll: 200 * time.Millisecond,
		Installer: VerifiedInstaller{Fetcher: fetcher, Keys: rel.keys}, Drivers: map[string]driver.Driver{"process": drv}})
	must(t, err)
	runAgent(t, a)

	r := waitFor(t, a, 20*time.Second, "fast healthy while slow downloads", func(r reconciler.NodeReport) bool {
		return r.Apps["fast"].State == reconciler.AppHealthy && r.Apps["slow"].State == reconciler.AppUpgrading
	})
	t.Logf("fast %s, slow %s", r.Apps["fast"].State, r.Apps["slow"].State)

	start := time.Now()
	gittest.PushFiles(t, repo, "main", spec("file://"+good), "slow: use the mirror")
	waitFor(t, a, 20*time.Second, "slow healthy from the corrected URL", func(r reconciler.NodeReport) bool {
		return r.Apps["slow"].State == reconciler.AppHealthy && r.Apps["slow"].Version == "1.0.0"
	})
	t.Logf("corrective commit applied %v after its push; %d slow requests", time.Since(start).Round(time.Millisecond), hits.Load())
}
