package dashboard

import (
	"fmt"
	"net/http"
	"strings"
)

// Handler serves the page under Options.BasePath: GET / (the page),
// GET /assets/... (its script and style), GET /api/snapshot (the snapshot
// as JSON) and GET /api/events (server-sent events, one "snapshot" event
// per change). Every other method is 405: the dashboard only reads.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", s.serveIndex)
	mux.Handle("/assets/", http.StripPrefix("/assets", s.files))
	mux.HandleFunc("/api/snapshot", s.serveSnapshot)
	mux.HandleFunc("/api/events", s.serveEvents)
	var h http.Handler = mux
	if s.opt.BasePath != "" {
		h = underBase(s.opt.BasePath, mux)
	}
	return readOnly(h)
}

// readOnly refuses every method but GET and HEAD.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "reconciler ui is read-only: "+r.Method+" is not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
		next.ServeHTTP(w, r)
	})
}

// underBase serves next under base: base itself redirects to base/.
func underBase(base string, next http.Handler) http.Handler {
	strip := http.StripPrefix(base, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == base:
			http.Redirect(w, r, base+"/", http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, base+"/"):
			strip.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// basePath is where the browser sees the page: the proxy's
// X-Forwarded-Prefix (when it is a plain path) before Options.BasePath.
func (s *Server) basePath(r *http.Request) string {
	p := strings.TrimRight(r.Header.Get("X-Forwarded-Prefix"), "/")
	if p != "" && !validPrefix(p) {
		p = ""
	}
	return p + s.opt.BasePath + "/"
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	if err := s.index.Execute(w, struct{ Base string }{s.basePath(r)}); err != nil {
		http.Error(w, fmt.Sprintf("render the page: %v", err), http.StatusInternalServerError)
	}
}

func (s *Server) serveSnapshot(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(s.current())
}

// serveEvents streams snapshots until the page goes away or the server
// shuts down (the request's context ends in both cases).
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	flush, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported by this connection", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	ch, unsubscribe := s.subscribe()
	defer unsubscribe()
	beat := s.opt.Clock.NewTicker(s.opt.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
				return
			}
		case <-beat.C():
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil {
				return
			}
		}
		flush.Flush()
	}
}
