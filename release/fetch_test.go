package release

import (
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
)

func TestFetchRetriesServerErrors(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("artifact"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	f, _ := NewFetcher(Options{CacheDir: dir, Retries: 2, Backoff: time.Millisecond})
	p, err := f.Fetch(context.Background(), srv.URL+"/a.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); string(data) != "artifact" || hits.Load() != 3 {
		t.Errorf("got %q after %d requests", data, hits.Load())
	}
	if want := f.cachePath(mustPin(t, sha256Hex([]byte("artifact")))); p != want {
		t.Errorf("cached at %s, want %s", p, want)
	}
}

func TestFetchSizeLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 100)))
	}))
	defer srv.Close()
	dir := t.TempDir()
	f, _ := NewFetcher(Options{CacheDir: dir, MaxSize: 10})
	_, err := f.Fetch(context.Background(), srv.URL)
	checkErr(t, err, nil, "more than the 10 bytes allowed")
	local := writeTestFile(t, filepath.Join(dir, "big"), []byte(strings.Repeat("x", 100)))
	_, err = f.Fetch(context.Background(), local)
	checkErr(t, err, nil, "100 bytes, more than the 10 allowed")
}

func TestFetchLocalSources(t *testing.T) {
	dir := t.TempDir()
	p := writeTestFile(t, filepath.Join(dir, "a.tar.gz"), []byte("x"))
	f, _ := NewFetcher(Options{})
	for _, src := range []string{p, "file://" + p} {
		got, err := f.Fetch(context.Background(), src)
		if err != nil || got != p {
			t.Errorf("Fetch(%s) = %s, %v", src, got, err)
		}
	}
	_, err := f.Fetch(context.Background(), filepath.Join(dir, "missing"))
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	for src, want := range map[string]string{
		"ftp://host/a":      `unsupported scheme "ftp"`,
		"file://host/a":     "want file:///absolute/path",
		"http://x/a.tar.gz": "need a cache directory",
		"":                  "empty source",
	} {
		_, err := f.Fetch(context.Background(), src)
		checkErr(t, err, nil, want)
	}
}

func TestFetchCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	f, _ := NewFetcher(Options{CacheDir: t.TempDir(), Backoff: time.Hour})
	done := make(chan error)
	go func() {
		_, err := f.Fetch(ctx, srv.URL)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled fetch: %v", err)
	}
}

func mustPin(t *testing.T, hexSum string) []byte {
	t.Helper()
	pin, err := parsePin(hexSum)
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

// TestParseSourceRefusals: an http URL without a host was accepted, and then
// retried as a network error (Client.Do: "no Host in request URL") for
// seconds; a source that does not parse, or a file:// URL with a host, was
// quoted whole in the error, password included, and such errors reach the
// node reports every node reads. Both found by FuzzParseSource.
func TestParseSourceRefusals(t *testing.T) {
	for _, tt := range []struct{ source, want string }{
		{"http:///web.tar.gz", "no host"},
		{"https://ada:hunter22@releases.example.com/%zz", `"https://REDACTED@releases.example.com/%zz": invalid URL escape`},
		{"https://ada:hunter22@[::1/web.tar.gz", "missing ']' in host"},
		{"file://ada:hunter22@host/web.tar.gz", "want file:///absolute/path"},
	} {
		_, _, err := parseSource(tt.source)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter22") {
			t.Errorf("parseSource(%q) = %v, want an error saying %q without the password", tt.source, err, tt.want)
		}
	}
}
