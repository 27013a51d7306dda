// Command workload is the example app that reconciler upgrades in its tests,
// benchmarks and demo: a small HTTP service.
//
// It serves on the first socket it inherits with systemd's convention
// (LISTEN_FDS, fd 3; LISTEN_PID is honoured when set and may be absent) or,
// when run alone, on its own address (-listen, or $WORKLOAD_LISTEN).
// GET / answers its version, GET /health answers {"status":"ok","version":...},
// GET /metrics serves Prometheus metrics: http_requests_total{code} counts
// the answers of GET / by status code (the codes 200 and 500 from zero, so
// a query of errors finds a series before the first one), and
// workload_info{version} says which version answers.
//
// $WORKLOAD_ERROR_RATE (a fraction, such as 0.5; set in a release's
// manifest env) makes that share of GET / answer 500 while /health stays
// ok: a bad version only a metric gate (health.metrics) catches.
// On SIGTERM or SIGINT it stops accepting, lets accepted connections send
// their request, and drains in-flight requests, exiting only once
// http.Server.Shutdown has returned (see drainAndStop).
//
// With -events FILE (or $WORKLOAD_EVENTS) it appends its life to FILE as
// JSON lines, one write each, for the chaos tests' judge (see
// internal/fleetlab): {"event":"start"|"ready"|"stop"|"exit","pid":N,
// "version":"1.1.0","mono":NS,"time":"RFC3339"} where mono is
// CLOCK_MONOTONIC in nanoseconds, comparable between processes of the
// machine. start is written first thing, ready once it serves, stop when
// SIGTERM arrives and exit once drained. -start-delay (or
// $WORKLOAD_START_DELAY) waits that long between start and serving, to make
// a switch slow.
//
// Build settings: -ldflags "-X main.version=1.2.0" sets the version;
// "-X main.broken=true" builds a version whose health check fails.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Set with -ldflags -X. They are strings because -X sets only strings.
var (
	version = "dev"
	broken  = "false"
)

func main() {
	listen := flag.String("listen", os.Getenv("WORKLOAD_LISTEN"), "address to listen on when no socket is inherited")
	drain := flag.Duration("drain", 30*time.Second, "how long to drain in-flight requests on SIGTERM")
	events := flag.String("events", os.Getenv("WORKLOAD_EVENTS"), "append start, ready, stop and exit events to this file as JSON lines")
	delay := flag.Duration("start-delay", envDuration("WORKLOAD_START_DELAY"), "wait this long after starting before serving (a slow start)")
	flag.Parse()
	ev, err := openEvents(*events)
	if err != nil {
		log.Printf("workload %s: %v", version, err)
		os.Exit(1)
	}
	defer ev.close()
	ev.write("start")
	if err := run(*listen, *drain, *delay, ev); err != nil {
		log.Printf("workload %s: %v", version, err)
		ev.write("exit")
		os.Exit(1)
	}
	ev.write("exit")
}

func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}

func run(addr string, drain, delay time.Duration, ev *eventLog) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, inherited, err := listener(addr)
	if err != nil {
		return err
	}
	defer runtime.KeepAlive(inherited)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			ev.write("stop")
			return nil // never served: nothing to drain
		}
	}
	conns := &tracker{state: map[net.Conn]http.ConnState{}}
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second, ConnState: conns.track}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("workload %s (pid %d) serving on %s", version, os.Getpid(), ln.Addr())
	ev.write("ready")
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	ev.write("stop")
	if err := drainAndStop(srv, ln, served, conns, drain); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	log.Printf("workload %s (pid %d) drained", version, os.Getpid())
	return nil
}

// drainAndStop hands the shared socket over without losing a request.
// http.Server.Shutdown alone is not enough on a shared socket: a connection
// it sees before its request has been read is closed unanswered. So: stop
// accepting (queued connections stay in the socket for the next version),
// let accepted connections deliver their request, then Shutdown, which
// waits for the requests in flight. Keep-alives are off from the start, so
// no connection takes a new request after its current one.
func drainAndStop(srv *http.Server, ln net.Listener, served <-chan error, conns *tracker, drain time.Duration) error {
	srv.SetKeepAlivesEnabled(false)
	ln.Close()
	<-served // from here every accepted connection is tracked
	deadline := time.Now().Add(min(drain, time.Second))
	for conns.anyNew() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	return srv.Shutdown(ctx)
}

// tracker knows each connection's state (http.Server.ConnState).
type tracker struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func (t *tracker) track(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s == http.StateClosed || s == http.StateHijacked {
		delete(t.state, c)
		return
	}
	t.state[c] = s
}

// anyNew reports whether a connection has not yet sent its first request.
func (t *tracker) anyNew() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.state {
		if s == http.StateNew {
			return true
		}
	}
	return false
}

// listener returns the inherited socket (fd 3) when LISTEN_FDS says there is
// one for this process, otherwise a socket of its own on addr.
// The inherited *os.File is returned so that the caller keeps fd 3 open.
func listener(addr string) (net.Listener, *os.File, error) {
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	pid := os.Getenv("LISTEN_PID")
	if n >= 1 && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		// fd 3 stays open for the life of the process: a restarted agent
		// takes its copy of the socket back from it (pidfd_getfd).
		f := os.NewFile(3, "LISTEN_FD_3")
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, nil, fmt.Errorf("inherited socket fd 3: %w", err)
		}
		return ln, f, nil
	}
	if addr == "" {
		return nil, nil, errors.New("no inherited socket (LISTEN_FDS) and no -listen address")
	}
	ln, err := net.Listen("tcp", addr)
	return ln, nil, err
}

func handler() http.Handler {
	return handlerWith(errorRate(os.Getenv("WORKLOAD_ERROR_RATE")))
}

// errorRate reads $WORKLOAD_ERROR_RATE: a fraction in [0, 1], 0 when unset
// or not one (logged).
func errorRate(s string) float64 {
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1 {
		log.Printf("workload %s: WORKLOAD_ERROR_RATE=%q is not a fraction in [0, 1]; answering without errors", version, s)
		return 0
	}
	return f
}

// handlerWith serves the workload's endpoints; errRate of GET / answer 500.
func handlerWith(errRate float64) http.Handler {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total",
		Help: "Answers of GET / by status code."}, []string{"code"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workload_info",
		Help: "Always 1: the version that answers."}, []string{"version"})
	reg.MustRegister(requests, info)
	requests.WithLabelValues("200")
	requests.WithLabelValues("500")
	info.WithLabelValues(version).Set(1)
	var answered atomic.Uint64
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		status, code := "ok", http.StatusOK
		if broken == "true" {
			status, code = "error", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": status, "version": version})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// ?delay=100ms holds the request, to show that a drain finishes it.
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		// Every 1/errRate-th answer fails: the share is exact, not drawn.
		if n := answered.Add(1); errRate > 0 && math.Floor(float64(n)*errRate) > math.Floor(float64(n-1)*errRate) {
			requests.WithLabelValues("500").Inc()
			http.Error(w, version+": failing on purpose (WORKLOAD_ERROR_RATE)", http.StatusInternalServerError)
			return
		}
		requests.WithLabelValues("200").Inc()
		fmt.Fprintln(w, version)
	})
	return mux
}
