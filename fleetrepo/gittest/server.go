package gittest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Serve serves the bare repository at bareDir over HTTP on 127.0.0.1 with
// the real `git http-backend` (smart protocol, receive-pack enabled, no
// authentication) until the test ends, and returns its clone URL. Under
// -short (make test-unit) it skips the test: a server and a process per
// request are not in the fast tier.
func Serve(t testing.TB, bareDir string) string {
	t.Helper()
	return serve(t, bareDir, func(h http.Handler) http.Handler { return h })
}

// ServeWrapped is Serve with the server's handler wrapped by wrap: a test
// that must see, or alter, what a client sends or the server answers.
func ServeWrapped(t testing.TB, bareDir string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	return serve(t, bareDir, wrap)
}

func serve(t testing.TB, bareDir string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: serves git http-backend over HTTP")
	}
	backend := httpBackend(t)
	root, name := filepath.Split(filepath.Clean(bareDir))
	env := []string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		// Anonymous pushes: git http-backend refuses receive-pack unless
		// http.receivepack is true (or a user authenticated).
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true",
	}
	h := &cgi.Handler{Path: backend, Env: env, Stderr: os.Stderr}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	srv := httptest.NewUnstartedServer(wrap(h))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/" + strings.TrimSuffix(name, "/")
}

// httpBackend finds git-http-backend in git's exec path, or skips the test.
func httpBackend(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skipf("git not available: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("git http-backend not available: %v", err)
	}
	return path
}

// Requests counts what a Git server answered, by kind, for tests and
// benchmarks that measure how much Git traffic a client makes.
type Requests struct {
	mu sync.Mutex
	n  Counts
}

// Counts are a server's requests by kind.
type Counts struct {
	Adverts int // GET info/refs?service=git-upload-pack: a ref listing (ls-remote; go-git's fetch starts with one too)
	Fetches int // POST git-upload-pack: objects sent
	Pushes  int // GET info/refs?service=git-receive-pack and POST git-receive-pack
	Other   int
}

// Total is every request counted.
func (c Counts) Total() int { return c.Adverts + c.Fetches + c.Pushes + c.Other }

// Sub is c less an earlier count.
func (c Counts) Sub(before Counts) Counts {
	return Counts{Adverts: c.Adverts - before.Adverts, Fetches: c.Fetches - before.Fetches,
		Pushes: c.Pushes - before.Pushes, Other: c.Other - before.Other}
}

func (c Counts) String() string {
	return fmt.Sprintf("%d requests (%d ref advertisements, %d upload-pack, %d receive-pack, %d other)",
		c.Total(), c.Adverts, c.Fetches, c.Pushes, c.Other)
}

// Counts returns the requests counted so far.
func (r *Requests) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *Requests) count(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case strings.HasSuffix(req.URL.Path, "/info/refs") && req.URL.Query().Get("service") == "git-upload-pack":
		r.n.Adverts++
	case strings.HasSuffix(req.URL.Path, "/git-upload-pack"):
		r.n.Fetches++
	case strings.HasSuffix(req.URL.Path, "/git-receive-pack") || req.URL.Query().Get("service") == "git-receive-pack":
		r.n.Pushes++
	default:
		r.n.Other++
	}
}

// ServeCounted is Serve, counting every request the server answers.
func ServeCounted(t testing.TB, bareDir string) (string, *Requests) {
	t.Helper()
	r := &Requests{}
	url := serve(t, bareDir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.count(req)
			h.ServeHTTP(w, req)
		})
	})
	return url, r
}
