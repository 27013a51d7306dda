package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetops/reconciler/agent/health"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
)

// Healthz is the body of GET /healthz: the node, how it is doing, and its
// last report. It answers 200 in every state: the agent is up; Status says
// whether the node does what the fleet repo asks.
type Healthz struct {
	Node string `json:"node"`
	// Status is "starting" before the first pass, "degraded" while the node
	// refuses its tip (a spec that does not load, a fetch that fails, a tip
	// that is untrusted or moved backwards) or an app of it is failed or
	// unhealthy, "ok" otherwise.
	Status string `json:"status"`
	// Errors say why it is degraded: the tip's refusal, the spec or fetch
	// error, then each failed or unhealthy app's ("web: health check: ...").
	Errors []string              `json:"errors,omitempty"`
	Report reconciler.NodeReport `json:"report"`
	Tip    TipStatus             `json:"tip"` // freshness of the tracked branch
}

// Health statuses of /healthz.
const (
	HealthStarting = "starting"
	HealthOK       = "ok"
	HealthDegraded = "degraded"
)

// healthOf is the /healthz body of a node report.
func healthOf(node string, rep *reconciler.NodeReport) Healthz {
	h := Healthz{Node: node, Status: HealthStarting}
	if rep == nil {
		return h
	}
	h.Status, h.Report = HealthOK, *rep
	if rep.SpecError != "" {
		h.Errors = append(h.Errors, rep.SpecError)
	}
	if rep.Conflict != "" {
		h.Errors = append(h.Errors, rep.Conflict)
	}
	for _, name := range slices.Sorted(maps.Keys(rep.Apps)) {
		a := rep.Apps[name]
		if a.State == reconciler.AppFailed || a.State == reconciler.AppUnhealthy {
			h.Errors = append(h.Errors, fmt.Sprintf("%s: %s: %s", name, a.State, a.Error))
		}
	}
	if len(h.Errors) > 0 {
		h.Status = HealthDegraded
	}
	return h
}

// serve runs the /healthz and /metrics server on ln until ctx ends.
func (a *Agent) serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{Registry: a.cfg.Registry}))
	// Every answer names the agent: a health check that reaches it (under
	// any name, through any redirect or proxy) is refused, as it proves
	// nothing about a workload (health.AgentHeader).
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(health.AgentHeader, a.cfg.Node)
		mux.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Health is what /healthz answers now: the last report, and the tracked
// branch's freshness and refusal.
func (a *Agent) Health() Healthz {
	h := healthOf(a.cfg.Node, a.last.Load())
	h.Tip = a.tip.snapshot()
	h.Tip.Untrusted, h.Tip.Refused = redact.String(h.Tip.Untrusted), redact.String(h.Tip.Refused) // a repo URL's credentials
	if h.Status != HealthStarting && h.Tip.Refused != "" {
		h.Status = HealthDegraded
		h.Errors = append([]string{h.Tip.Refused}, h.Errors...)
	}
	return h
}

func (a *Agent) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a.Health()); err != nil {
		a.log.Debug("write /healthz", "remote", r.RemoteAddr, "err", err)
	}
}

// selfAddrs are the agent's own listeners, which a health check may not
// target (health.Check.Self).
func (a *Agent) selfAddrs() []net.Addr {
	if addr := a.Addr(); addr != nil {
		return []net.Addr{addr}
	}
	return nil
}
