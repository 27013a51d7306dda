package agent

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/health"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

// TestHealthTargetIsNotTheAgent: a health check aimed at the agent's own
// /healthz or /metrics, under any name of the host, is refused with an
// error that says so, at once; before, the agent's 200 made any release
// "healthy".
func TestHealthTargetIsNotTheAgent(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	h.a.cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if err := h.a.startHTTP(ctx, &wg); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(h.a.Addr().String())
	for _, c := range []health.Check{
		{HTTP: "http://127.0.0.1:" + port + "/healthz"},
		{HTTP: "http://localhost:" + port + "/healthz"},
		{HTTP: "http://[::1]:" + port + "/metrics"},
		{HTTP: "http://0.0.0.0:" + port + "/healthz"},
		{HTTP: "http://127.0.0.1:" + port + "/metrics"},
		{TCP: "localhost:" + port},
	} {
		c.Retries, c.RetryDelay = 10, time.Second
		start := time.Now()
		err := h.a.healthFunc(&c)(context.Background())
		if err == nil || !errors.Is(err, health.ErrAgentTarget) || !strings.Contains(err.Error(), "point the health check at the workload") {
			t.Errorf("%s%s: %v, want refused", c.HTTP, c.TCP, err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("%s%s: refused after %v, retried", c.HTTP, c.TCP, time.Since(start))
		}
	}
}

// TestConvergeRefusesAVersionThatIsAPath: a version names a directory of
// the node; one that is a path (as a hostile rollout record in a shared
// ref could name) is refused before anything is read there. Before, the
// agent ran the release.json it found at the path it led to.
func TestConvergeRefusesAVersionThatIsAPath(t *testing.T) {
	h := newHarness(t, nil, "web@1.0.0")
	planted := t.TempDir()
	m := `{"app": "web", "version": "1.0.0", "command": ["bin/app"]}`
	if err := os.WriteFile(filepath.Join(planted, release.ManifestName), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	up, err := filepath.Rel(filepath.Join(h.a.cfg.StateDir, "releases", "web"), planted)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{up, "../x", "1.0.0/../../x", ".."} {
		app := spec.App{Name: "web", Version: v}
		_, err := h.a.Converge(context.Background(), Target{App: app, Version: v})
		if err == nil || !strings.Contains(err.Error(), "not a valid version") {
			t.Errorf("version %q: %v, want refused", v, err)
		}
	}
	if len(h.drv.switches) != 0 || len(h.inst.calls) != 0 {
		t.Fatalf("switched %v, installed %v", h.drv.switches, h.inst.calls)
	}
}
