package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetops/reconciler/reconciler"
)

// Healthz is the body of GET /healthz: the node and its last report.
type Healthz struct {
	Node string `json:"node"`
	// Status is "starting" before the first pass, "degraded" while the
	// node refuses the tip of the tracked branch (untrusted, or moved
	// backwards), "ok" otherwise.
	Status string                `json:"status"`
	Report reconciler.NodeReport `json:"report"`
	Tip    TipStatus             `json:"tip"` // freshness of the tracked branch
}

// serve runs the /healthz and /metrics server on ln until ctx ends.
func (a *Agent) serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{Registry: a.cfg.Registry}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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

func (a *Agent) healthz(w http.ResponseWriter, r *http.Request) {
	h := Healthz{Node: a.cfg.Node, Status: "starting", Tip: a.tip.snapshot()}
	if rep := a.last.Load(); rep != nil {
		h.Status, h.Report = "ok", *rep
		if a.tip.degraded() {
			h.Status = "degraded"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(h)
}
