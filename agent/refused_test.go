package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

// escaping is a gzipped tar whose entry climbs out of the release.
func escaping(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := "pwned"
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../../escape", Mode: 0o644, Size: int64(len(body))}))
	_, err := tw.Write([]byte(body))
	must(t, err)
	must(t, tw.Close())
	must(t, zw.Close())
	return buf.Bytes()
}

// TestRefusedArtifactIsNotFetchedAgain: an artifact refused for what it is
// (an entry escaping the release; a signature of other bytes) is fetched
// once, not at every pass; a spec change pointing at the same bytes from
// another URL fetches them once and refuses them by digest without
// unpacking; a real fix is fetched and installed. Before, every pass
// fetched and unpacked the refused artifact again.
func TestRefusedArtifactIsNotFetchedAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: an HTTP artifact server")
	}
	rel := newReleases(t)
	bomb := escaping(t)
	bombSig, err := signing.Sign(bytes.NewReader(bomb), rel.key)
	must(t, err)
	good := rel.pack(t, "web", "1.0.0")
	var mu sync.Mutex
	hits := map[string]int{}
	files := map[string][]byte{"/bomb.tgz": bomb, "/bomb.tgz.sig": bombSig, "/copy.tgz": bomb, "/copy.tgz.sig": bombSig,
		"/other.tgz": bomb, "/other.tgz.sig": []byte("bm90IGEgc2lnbmF0dXJl")}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[path]
	}
	spec := func(web, db string) map[string]string {
		return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet
nodes: n1: {}
apps: web: {version: "1.0.0", artifact: url: %q, health: exec: ["bin/app"]}
apps: db: {version: "1.0.0", artifact: url: %q, health: exec: ["bin/app"]}
`, web, db)}
	}
	repo := gittest.NewBare(t, spec(srv.URL+"/bomb.tgz", srv.URL+"/other.tgz"))
	desired, err := fleetrepo.OpenDesired(context.Background(), fleetrepo.DesiredOptions{URL: repo})
	must(t, err)
	fetcher, err := release.NewFetcher(release.Options{CacheDir: t.TempDir(), Timeout: time.Minute})
	must(t, err)
	a, err := New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired,
		Installer: VerifiedInstaller{Fetcher: fetcher, Keys: rel.keys}, Drivers: map[string]driver.Driver{"process": &fakeDriver{fail: map[string]bool{}}}})
	must(t, err)
	ctx := context.Background()
	for range 3 {
		a.Reconcile(ctx)
	}
	r := *a.last.Load()
	if n := count("/bomb.tgz"); n != 1 {
		t.Errorf("escaping artifact fetched %d times in 3 passes, want 1", n)
	}
	if n := count("/other.tgz"); n != 1 {
		t.Errorf("badly signed artifact fetched %d times in 3 passes, want 1", n)
	}
	for _, app := range []string{"web", "db"} {
		if rep := r.Apps[app]; rep.State != reconciler.AppFailed || !strings.Contains(rep.Error, "not fetched again") {
			t.Errorf("%s: %+v, want failed, saying it is not fetched again", app, rep)
		}
	}

	gittest.PushFiles(t, repo, "main", spec(srv.URL+"/copy.tgz", srv.URL+"/other.tgz"), "web: same bytes elsewhere")
	for range 2 {
		a.Reconcile(ctx)
	}
	if n := count("/copy.tgz"); n != 1 {
		t.Errorf("the same bytes at a new URL fetched %d times, want 1", n)
	}
	if rep := a.last.Load().Apps["web"]; !strings.Contains(rep.Error, "refused before") {
		t.Errorf("web from the copy: %+v, want refused by digest", rep)
	}

	gittest.PushFiles(t, repo, "main", spec("file://"+good, srv.URL+"/other.tgz"), "web: the real release")
	a.Reconcile(ctx)
	if rep := a.last.Load().Apps["web"]; rep.State != reconciler.AppHealthy {
		t.Errorf("web after the fix: %+v", rep)
	}
}
