package release

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// releaseTree writes a small release directory.
func releaseTree(t *testing.T, dir string) {
	writeTestFile(t, filepath.Join(dir, ManifestName), []byte(`{"command": ["bin/web", "--verbose"], "env": {"MODE": "prod"},
 "listen": [{"name": "http", "address": "127.0.0.1:8080"}], "drainTimeout": "5s",
 "health": {"http": "http://127.0.0.1:8080/health"}}`))
	writeTestFile(t, filepath.Join(dir, "bin", "web"), []byte("#!/bin/sh\necho web\n"))
	os.Chmod(filepath.Join(dir, "bin", "web"), 0o750)
	writeTestFile(t, filepath.Join(dir, "static", "index.html"), []byte("<h1>hi</h1>"))
	if err := os.Symlink("static/index.html", filepath.Join(dir, "index.html")); err != nil {
		t.Fatal(err)
	}
}

func pack(t *testing.T, dir, app, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Pack(dir, app, version, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPackIsReproducible(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	releaseTree(t, a)
	releaseTree(t, b)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(filepath.Join(b, "bin", "web"), old, old)
	os.Chmod(filepath.Join(b, "bin", "web"), 0o700) // still executable: same mode
	if !bytes.Equal(pack(t, a, "web", "1.1.0"), pack(t, b, "web", "1.1.0")) {
		t.Fatal("same tree packed twice gives different bytes")
	}
}

func TestPackRefusesConflictingManifest(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, ManifestName), []byte(`{"app": "api", "command": ["x"]}`))
	err := Pack(dir, "web", "1.0.0", &bytes.Buffer{})
	checkErr(t, err, nil, "release.json says api , but packing web 1.0.0")
}

func TestPackInstallRoundTrip(t *testing.T) {
	src, dir := t.TempDir(), t.TempDir()
	releaseTree(t, src)
	art := pack(t, src, "web", "1.1.0")
	key := newTestKey(t, "cosign.pub")
	sig := key.sign(t, art)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/web.tar.gz":
			w.Write(art)
		case "/web.tar.gz.sig":
			w.Write(sig)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f, _ := NewFetcher(Options{CacheDir: filepath.Join(dir, "cache")})
	src1 := Source{URL: srv.URL + "/web.tar.gz", SignatureURL: srv.URL + "/web.tar.gz.sig"}
	dest := filepath.Join(dir, "web-1.1.0")
	m, err := f.Install(context.Background(), src1, key.keys, Want{App: "web", Version: "1.1.0"}, dest)
	if err != nil {
		t.Fatal(err)
	}
	if m.Driver != "process" || m.DrainTimeoutDuration() != 5*time.Second || m.Command[1] != "--verbose" {
		t.Errorf("manifest %+v", m)
	}
	checkTree(t, dest)

	// Pinned: the second install comes from the cache (only the signature is fetched).
	v, err := Verify(context.Background(), filepath.Join(dir, "cache", "sha256-"+sha256Hex(art)+".tar.gz"), key.keys, sig, sha256Hex(art), 0)
	if err != nil || v.KeyID != "cosign.pub" {
		t.Fatalf("verify cached copy: %v %+v", err, v)
	}
	hits.Store(0)
	src1.SHA256 = v.SHA256
	if _, err := f.Install(context.Background(), src1, key.keys, Want{App: "web"}, filepath.Join(dir, "again")); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests for a cached, pinned artifact, want 1 (the signature)", hits.Load())
	}

	// A cached copy corrupted on disk fails its pin, is removed, and the
	// next install downloads it again.
	cached := filepath.Join(dir, "cache", "sha256-"+v.SHA256+".tar.gz")
	writeTestFile(t, cached, []byte("rotten"))
	_, err = f.Install(context.Background(), src1, key.keys, Want{App: "web"}, filepath.Join(dir, "third"))
	checkErr(t, err, ErrDigestMismatch, "verify release")
	if _, err := f.Install(context.Background(), src1, key.keys, Want{App: "web"}, filepath.Join(dir, "third")); err != nil {
		t.Fatalf("install after a corrupted cache entry: %v", err)
	}
}

func checkTree(t *testing.T, dest string) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dest, "bin", "web"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/web: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dest, "index.html")); err != nil || target != "static/index.html" {
		t.Errorf("index.html symlink: %q %v", target, err)
	}
	if data, err := os.ReadFile(filepath.Join(dest, "index.html")); err != nil || string(data) != "<h1>hi</h1>" {
		t.Errorf("index.html: %q %v", data, err)
	}
}

func TestInspectListsEntries(t *testing.T) {
	src := t.TempDir()
	releaseTree(t, src)
	art := writeTestFile(t, filepath.Join(t.TempDir(), "web.tar.gz"), pack(t, src, "web", "1.1.0"))
	m, entries, err := Inspect(context.Background(), art, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	want := "release.json bin bin/web index.html static static/index.html"
	if got := joinNames(names); got != want || m.App != "web" {
		t.Errorf("entries %q, want %q", got, want)
	}
}

func TestInspectAndUnpackRefuseUnsafeEntries(t *testing.T) {
	dir := t.TempDir()
	art := writeTestFile(t, filepath.Join(dir, "in", "evil.tar.gz"), artifact(t, manifestEntry("web", "1"), symlink("lib", "/usr/lib")))
	_, _, err := Inspect(context.Background(), art, Limits{})
	checkErr(t, err, ErrUnsafe, `inspect `+art+`: unsafe entry "lib": symlink to absolute path "/usr/lib"`)
	dest := filepath.Join(dir, "out", "web")
	os.MkdirAll(filepath.Dir(dest), 0o755)
	_, err = Unpack(context.Background(), art, dest, Want{}, Limits{})
	checkErr(t, err, ErrUnsafe, `unpack `+art+`: unsafe entry "lib"`)
	assertNothingLeft(t, dest)
}
