package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/health"
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
