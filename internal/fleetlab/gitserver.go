package fleetlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// GitServer serves one bare repository with the real `git http-backend`
// (smart HTTP, pushes allowed, no authentication) on a loopback port that
// stays the same across Stop and Start, so agents see the server go away
// and come back. StallPushes holds pushes (git-receive-pack requests)
// until it is lifted, as an overloaded or locked server would.
type GitServer struct {
	bare    string
	addr    string
	handler http.Handler

	mu      sync.Mutex
	srv     *http.Server
	served  chan struct{} // closed when the current srv's Serve returned
	stall   chan struct{} // non-nil while pushes are stalled; closed to lift
	stalled int           // pushes held so far
	pushes  int           // pushes seen
}

// ServeGit serves the bare repository at bare on 127.0.0.1 until Close.
func ServeGit(bare string) (*GitServer, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("fleetlab: git --exec-path: %w (is git installed? run make deps)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("fleetlab: git http-backend: %w (install git's http-backend; run make deps)", err)
	}
	root := filepath.Dir(filepath.Clean(bare))
	g := &GitServer{bare: filepath.Clean(bare)}
	g.handler = &cgi.Handler{Path: backend, Env: []string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true",
	}, Stderr: os.Stderr}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fleetlab: git server: %w", err)
	}
	g.addr = ln.Addr().String()
	g.serve(ln)
	return g, nil
}

// Addr is the server's host:port, the same after a restart.
func (g *GitServer) Addr() string { return g.addr }

// URL is the repository's clone URL on the server.
func (g *GitServer) URL() string { return g.URLVia(g.addr) }

// URLVia is the repository's URL through another address (a proxy's).
func (g *GitServer) URLVia(addr string) string {
	return "http://" + addr + "/" + filepath.Base(g.bare)
}

// Pushes counts the pushes the server received, and those it stalled.
func (g *GitServer) Pushes() (seen, stalled int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pushes, g.stalled
}

func (g *GitServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(g.serveHTTP), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan struct{})
	g.mu.Lock()
	g.srv, g.served = srv, served
	g.mu.Unlock()
	go func() { defer close(served); _ = srv.Serve(ln) }()
}

func (g *GitServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
		g.mu.Lock()
		g.pushes++
		stall := g.stall
		if stall != nil {
			g.stalled++
		}
		g.mu.Unlock()
		if stall != nil {
			select {
			case <-stall:
			case <-r.Context().Done():
				return
			}
		}
	}
	g.handler.ServeHTTP(w, r)
}

// StallPushes holds every push from now on until LiftStall (fetches pass).
func (g *GitServer) StallPushes() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stall == nil {
		g.stall = make(chan struct{})
	}
}

// LiftStall lets held and later pushes through.
func (g *GitServer) LiftStall() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stall != nil {
		close(g.stall)
		g.stall = nil
	}
}

// Stop closes the listener and every connection, as a crashed server
// would; requests in flight fail.
func (g *GitServer) Stop() error {
	g.mu.Lock()
	srv, served := g.srv, g.served
	g.srv = nil
	g.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	<-served
	return err
}

// Start serves again on the same address (after Stop).
func (g *GitServer) Start() error {
	g.mu.Lock()
	running := g.srv != nil
	g.mu.Unlock()
	if running {
		return errors.New("fleetlab: git server already running")
	}
	var ln net.Listener
	var err error
	for range 50 { // the port may linger for a moment after Close
		if ln, err = net.Listen("tcp", g.addr); err == nil {
			g.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("fleetlab: restart git server on %s: %w", g.addr, err)
}

// Restart stops the server, waits down, and starts it again.
func (g *GitServer) Restart(ctx context.Context, down time.Duration) error {
	if err := g.Stop(); err != nil {
		return err
	}
	select {
	case <-time.After(down):
	case <-ctx.Done():
	}
	return g.Start()
}

// Close lifts a stall and stops the server.
func (g *GitServer) Close() error {
	g.LiftStall()
	return g.Stop()
}
