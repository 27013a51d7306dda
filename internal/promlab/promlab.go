// Package promlab runs a real Prometheus server for tests (Debian's
// prometheus package, found on PATH): a temporary configuration scraping
// the given targets every ScrapeInterval, on a free loopback port. A test
// that needs it fails, naming the package, when the binary is missing, and
// is skipped under -short (make test-unit, the tier without servers).
// Entry point: Start; the server stops at the test's cleanup.
package promlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Target is one scrape target: host:port serving /metrics, and the labels
// its series get (node: "node-1").
type Target struct {
	Addr   string
	Labels map[string]string
}

// Options configure a server.
type Options struct {
	Targets []Target
	// ScrapeInterval is how often every target is scraped (default 1s).
	ScrapeInterval time.Duration
}

// Server is a running Prometheus.
type Server struct {
	URL string // http://127.0.0.1:PORT
	Log string // its log file
}

// Start starts Prometheus scraping opt.Targets and returns once it is
// ready; it is stopped when the test ends.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts a Prometheus server (the fast tier, make test-unit, starts no servers)")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not on PATH: install Debian's prometheus package (make deps runs .ci/deps): %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(config(opt)), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		s, err := start(t, bin, conf, dir)
		if err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatalf("promlab: %v", err)
		}
		t.Logf("promlab: %v; trying another port", err)
	}
}

// config is the server's configuration file.
func config(opt Options) string {
	every := opt.ScrapeInterval
	if every <= 0 {
		every = time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n", every, every, every)
	b.WriteString("scrape_configs:\n  - job_name: targets\n    static_configs:\n")
	for _, tg := range opt.Targets {
		fmt.Fprintf(&b, "      - targets: [%q]\n", tg.Addr)
		if len(tg.Labels) > 0 {
			b.WriteString("        labels:\n")
			for k, v := range tg.Labels {
				fmt.Fprintf(&b, "          %s: %q\n", k, v)
			}
		}
	}
	return b.String()
}

// start runs the binary on a free port and waits until it is ready.
func start(t testing.TB, bin, conf, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "prometheus-"+strconv.Itoa(port)+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data-"+strconv.Itoa(port)),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	var once sync.Once
	go func() { _ = cmd.Wait(); log.Close(); close(exited) }()
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	s := &Server{URL: "http://" + addr, Log: logPath}
	if err := waitReady(s.URL, exited); err != nil {
		stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("prometheus on %s not ready: %w\n%s", addr, err, tail(b))
	}
	t.Cleanup(stop)
	return s, nil
}

// waitReady polls /-/ready until it answers 200, the process exits or 60s pass.
func waitReady(url string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/-/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("it exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail is the last lines of a log.
func tail(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
