package gittest

import (
	"net"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Serve serves the bare repository at bareDir over HTTP on 127.0.0.1 with
// the real `git http-backend` (smart protocol, receive-pack enabled, no
// authentication) until the test ends, and returns its clone URL. Under
// -short (make test-unit) it skips the test: a server and a process per
// request are not in the fast tier.
func Serve(t testing.TB, bareDir string) string {
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
	srv := httptest.NewUnstartedServer(h)
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
