package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/signing"
)

// badCase is one hostile or broken input to Install.
type badCase struct {
	name    string
	art     []byte // artifact bytes; signed with the trusted key unless sig is set
	sig     []byte // signature file content, when not the valid one
	pin     string
	limits  Limits
	is      error  // sentinel the error must wrap (nil: none checked)
	message string // substring the error must contain
}

func badCases(t *testing.T, good []byte, other testKey) []badCase {
	m := manifestEntry("web", "1.1.0")
	tampered := bytes.Clone(good)
	tampered[len(tampered)/2] ^= 1
	return []badCase{
		{name: "tampered byte", art: tampered, sig: nil, is: signing.ErrNoMatchingKey, message: "verify release web 1.1.0: signature does not match any trusted key (cosign.pub)"},
		{name: "wrong key", art: good, sig: other.sign(t, good), is: signing.ErrNoMatchingKey, message: "does not match any trusted key"},
		{name: "truncated signature", art: good, sig: []byte("MEUCIQ"), is: signing.ErrMalformedSignature, message: "malformed signature"},
		{name: "non-base64 signature", art: good, sig: []byte("not base64!"), is: signing.ErrMalformedSignature, message: "not base64"},
		{name: "empty signature file", art: good, sig: []byte{}, is: signing.ErrMalformedSignature, message: "malformed signature: empty"},
		{name: "empty artifact", art: []byte{}, message: "not a gzip stream"},
		{name: "digest mismatch", art: good, pin: strings.Repeat("ab", 32), is: ErrDigestMismatch, message: "sha256 mismatch"},
		{name: "dotdot entry", art: artifact(t, m, file("../evil", "x")), is: ErrUnsafe, message: `unsafe entry "../evil": path has a '..' component`},
		{name: "dotdot inside", art: artifact(t, m, file("bin/../../evil", "x")), is: ErrUnsafe, message: `"bin/../../evil"`},
		{name: "absolute path", art: artifact(t, m, file("/etc/evil", "x")), is: ErrUnsafe, message: `unsafe entry "/etc/evil": absolute path`},
		{name: "symlink outside", art: artifact(t, m, symlink("bin/sh", "../../etc/passwd")), is: ErrUnsafe, message: `unsafe entry "bin/sh": symlink to "../../etc/passwd" escapes`},
		{name: "symlink absolute", art: artifact(t, m, symlink("passwd", "/etc/passwd")), is: ErrUnsafe, message: `symlink to absolute path "/etc/passwd"`},
		{name: "symlink chain", art: artifact(t, m, symlink("y", "."), symlink("x", "y/..")), is: ErrUnsafe, message: `unsafe entry "x"`},
		{name: "write through symlink", art: artifact(t, m, symlink("d", "."), file("d/x", "x")), is: ErrUnsafe, message: `unsafe entry "d/x": parent "d" is not a directory`},
		{name: "hardlink outside", art: artifact(t, m, special(tar.TypeLink, "h", "../../etc/shadow")), is: ErrUnsafe, message: `unsafe entry "h": hardlink to "../../etc/shadow"`},
		{name: "hardlink absolute", art: artifact(t, m, special(tar.TypeLink, "h", "/etc/shadow")), is: ErrUnsafe, message: `unsafe entry "h"`},
		{name: "char device", art: artifact(t, m, special(tar.TypeChar, "dev/null", "")), is: ErrUnsafe, message: `unsafe entry "dev/null": device entry`},
		{name: "block device", art: artifact(t, m, special(tar.TypeBlock, "sda", "")), is: ErrUnsafe, message: `unsafe entry "sda": device entry`},
		{name: "fifo", art: artifact(t, m, special(tar.TypeFifo, "pipe", "")), is: ErrUnsafe, message: `unsafe entry "pipe": fifo entry`},
		{name: "duplicate entry", art: artifact(t, m, file("a", "1"), file("a", "2")), is: ErrUnsafe, message: `unsafe entry "a": duplicate entry`},
		{name: "too many entries", art: artifact(t, m, file("a", ""), file("b", ""), file("c", "")), limits: Limits{MaxEntries: 3}, is: ErrUnsafe, message: `unsafe entry "c": more than 3 entries`},
		{name: "tar bomb", art: artifact(t, m, file("big", strings.Repeat("x", 4096))), limits: Limits{MaxBytes: 1024}, is: ErrUnsafe, message: `unsafe entry "big": files total more than 1024 bytes`},
		{name: "gzip bomb", art: gzipBomb(t, m), limits: Limits{MaxBytes: 1 << 20, MaxEntries: 10}, is: ErrUnsafe, message: "gzip bomb"},
		{name: "missing manifest", art: artifact(t, file("bin/web", "x")), message: "no release.json at the root"},
		{name: "manifest is a symlink", art: artifact(t, symlink(ManifestName, "bin/web")), is: ErrUnsafe, message: "must be a regular file"},
		{name: "invalid manifest", art: artifact(t, file(ManifestName, `{"app":"web","version":"1.1.0","command":["/bin/sh"]}`)), message: `command[0]: "/bin/sh": must be a path relative to the release`},
		{name: "app mismatch", art: artifact(t, manifestEntry("api", "1.1.0")), is: ErrWrongRelease, message: "release.json says api 1.1.0, want web 1.1.0"},
		{name: "version mismatch", art: artifact(t, manifestEntry("web", "1.0.0")), is: ErrWrongRelease, message: "release.json says web 1.0.0, want web 1.1.0"},
	}
}

// gzipBomb is a valid small artifact followed, inside the same gzip stream,
// by 8 MiB of zeros that compress to about 8 KiB.
func gzipBomb(t *testing.T, m entry) []byte {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	h := m.hdr
	tw.WriteHeader(&h)
	tw.Write([]byte(m.body))
	tw.Close()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(tarBuf.Bytes())
	zeros := make([]byte, 1<<20)
	for range 8 {
		zw.Write(zeros)
	}
	zw.Close()
	return buf.Bytes()
}

func TestInstallRefusesBadInput(t *testing.T) {
	trusted, other := newTestKey(t, "cosign.pub"), newTestKey(t, "other.pub")
	good := artifact(t, manifestEntry("web", "1.1.0"), file("bin/web", "#!/bin/sh\n"))
	cases := badCases(t, good, other)
	if len(cases) < 15 {
		t.Fatalf("only %d bad cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			art := writeTestFile(t, filepath.Join(dir, "in", "web.tar.gz"), c.art)
			sig := c.sig
			if sig == nil {
				sig = trusted.sign(t, c.art)
				if c.name == "tampered byte" {
					sig = trusted.sign(t, good)
				}
			}
			sigPath := writeTestFile(t, art+".sig", sig)
			f, err := NewFetcher(Options{CacheDir: filepath.Join(dir, "cache"), Limits: c.limits})
			if err != nil {
				t.Fatal(err)
			}
			want := Want{App: "web", Version: "1.1.0"}
			dest := filepath.Join(dir, "out", "web-1.1.0")
			os.MkdirAll(filepath.Dir(dest), 0o755)
			_, err = f.Install(context.Background(), Source{URL: art, SignatureURL: sigPath, SHA256: c.pin}, trusted.keys, want, dest)
			checkErr(t, err, c.is, c.message)
			assertNothingLeft(t, dest)
		})
	}
}

func checkErr(t *testing.T, err, is error, message string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("error: %v", err)
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error does not wrap %v", is)
	}
	if !strings.Contains(err.Error(), message) {
		t.Errorf("error does not contain %q", message)
	}
}

func TestInstallHTTPFailures(t *testing.T) {
	trusted := newTestKey(t, "cosign.pub")
	good := artifact(t, manifestEntry("web", "1.1.0"))
	sig := trusted.sign(t, good)
	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/web.tar.gz.sig", func(w http.ResponseWriter, r *http.Request) { w.Write(sig) })
	mux.HandleFunc("/missing.tar.gz", func(w http.ResponseWriter, r *http.Request) { hits.Add(1); http.NotFound(w, r) })
	mux.HandleFunc("/stall.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Length", "1000")
		w.Write(good[:10])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	cases := []struct {
		name, url, message string
		is                 error
		hits               int32
	}{
		{"HTTP 404", srv.URL + "/missing.tar.gz", "HTTP 404 Not Found", ErrNotFound, 1},
		{"server down", down.URL + "/web.tar.gz", "giving up after 3 attempts", nil, 0},
		{"server stalls", srv.URL + "/stall.tar.gz", "stalled: no data received", nil, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hits.Store(0)
			dir := t.TempDir()
			f, _ := NewFetcher(Options{CacheDir: filepath.Join(dir, "cache"), StallTimeout: 50 * time.Millisecond, Retries: 2, Backoff: time.Millisecond})
			dest := filepath.Join(dir, "out", "web")
			os.MkdirAll(filepath.Dir(dest), 0o755)
			_, err := f.Install(context.Background(), Source{URL: c.url, SignatureURL: srv.URL + "/web.tar.gz.sig"}, trusted.keys, Want{App: "web", Version: "1.1.0"}, dest)
			checkErr(t, err, c.is, c.message)
			if !strings.Contains(err.Error(), "fetch release web 1.1.0: fetch http://") {
				t.Errorf("error does not name the release and URL")
			}
			if got := hits.Load(); got != c.hits {
				t.Errorf("%d requests, want %d", got, c.hits)
			}
			assertNothingLeft(t, dest)
			if ents, _ := os.ReadDir(filepath.Join(dir, "cache")); len(ents) != 0 {
				t.Errorf("cache holds %d files after a failed download", len(ents))
			}
		})
	}
}

func TestInstallDestinationExists(t *testing.T) {
	trusted := newTestKey(t, "cosign.pub")
	good := artifact(t, manifestEntry("web", "1.1.0"))
	dir := t.TempDir()
	art := writeTestFile(t, filepath.Join(dir, "web.tar.gz"), good)
	writeTestFile(t, art+".sig", trusted.sign(t, good))
	dest := filepath.Join(dir, "out", "web")
	writeTestFile(t, filepath.Join(dest, "keep"), []byte("old"))
	f, _ := NewFetcher(Options{})
	_, err := f.Install(context.Background(), Source{URL: art, SignatureURL: art + ".sig"}, trusted.keys, Want{App: "web", Version: "1.1.0"}, dest)
	checkErr(t, err, nil, "already exists")
	if data, _ := os.ReadFile(filepath.Join(dest, "keep")); string(data) != "old" {
		t.Error("existing destination was touched")
	}
}
