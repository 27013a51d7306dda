package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// fleetSource is a simulated fleet: the test sets what it reads and wakes
// the server's watch. The browser tests (e2e/ui_test.go) run the real one.
type fleetSource struct {
	mu    sync.Mutex
	snap  *Snapshot
	err   error
	wakes chan struct{}
}

func newFleetSource(version string) *fleetSource {
	s := &fleetSource{wakes: make(chan struct{})} // a send returns once the watch has it
	s.set(version, nil)
	return s
}

func (s *fleetSource) set(version string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	if err == nil {
		s.snap = &Snapshot{Repo: "/srv/fleet.git", Apps: []App{{Name: "web", Target: version}}, Rollouts: []reconciler.Status{},
			Nodes: []Node{{Name: "n1", Report: &reconciler.NodeReport{Node: "n1",
				Apps: map[string]reconciler.AppReport{"web": {Version: version, State: reconciler.AppHealthy}}}}}}
	}
}

func (s *fleetSource) Snapshot(context.Context) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	c := *s.snap
	return &c, nil
}

func (s *fleetSource) Watch(ctx context.Context, wake func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wakes:
			wake()
		}
	}
}

// serve runs a Server on src with a fake clock (so only the watch wakes
// it) and returns its test server.
func serve(t *testing.T, src Source, base string) *httptest.Server {
	t.Helper()
	srv, err := New(Options{Source: src, BasePath: base, Clock: clock.NewFake(time.Unix(0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.BaseContext = func(_ net.Listener) context.Context { return ctx }
	hs.Start()
	t.Cleanup(func() { cancel(); hs.Close(); <-done })
	return hs
}

func get(t *testing.T, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// Every method but GET and HEAD is refused on every path: nothing writes.
func TestReadOnly(t *testing.T) {
	hs := serve(t, newFleetSource("1.0.0"), "")
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, "PURGE"} {
		for _, p := range []string{"/", "/api/snapshot", "/api/events", "/assets/app.js", "/nope"} {
			req, _ := http.NewRequest(m, hs.URL+p, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow \"GET, HEAD\"", m, p, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	code, h, body := get(t, hs.URL+"/")
	if code != 200 || !strings.Contains(body, "read-only view") || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET /: %d, CSP %q:\n%s", code, h.Get("Content-Security-Policy"), body)
	}
}

// --base-path serves everything under the prefix; a proxy that strips the
// prefix names it in X-Forwarded-Prefix, which the page's <base> follows
// (and a prefix that is not a plain path is ignored, never echoed).
func TestBasePath(t *testing.T) {
	hs := serve(t, newFleetSource("1.0.0"), "/ops/fleet/")
	for _, c := range []struct {
		path, prefix string
		code         int
		want         string
	}{
		{"/ops/fleet/", "", 200, `<base href="/ops/fleet/">`},
		{"/ops/fleet/", "/proxy", 200, `<base href="/proxy/ops/fleet/">`},
		{"/ops/fleet/", `/x"><script>alert(1)</script>`, 200, `<base href="/ops/fleet/">`},
		{"/ops/fleet/", "//evil.example.com", 200, `<base href="/ops/fleet/">`},
		{"/ops/fleet/assets/app.js", "", 200, "EventSource"},
		{"/ops/fleet/api/snapshot", "", 200, `"web"`},
		{"/ops/fleet", "", 301, ""},
		{"/", "", 404, ""},
		{"/api/snapshot", "", 404, ""},
	} {
		code, h, body := get(t, hs.URL+c.path, "X-Forwarded-Prefix", c.prefix)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s (X-Forwarded-Prefix %q): %d, want %d with %q:\n%.300s", c.path, c.prefix, code, c.code, c.want, body)
		}
		if code == 301 && h.Get("Location") != "/ops/fleet/" {
			t.Errorf("GET %s redirects to %q, want /ops/fleet/", c.path, h.Get("Location"))
		}
	}
	for _, bad := range []string{"fleet", "/a b", "/a/../b", `/"x`} {
		if _, err := New(Options{Source: newFleetSource("1.0.0"), BasePath: bad}); err == nil {
			t.Errorf("base path %q accepted", bad)
		}
	}
}

// A change that the watch reports reaches an open event stream; a failed
// read keeps the last good fleet and adds the error; an unchanged fleet
// sends nothing.
func TestEventsFollowTheSource(t *testing.T) {
	src := newFleetSource("1.0.0")
	hs := serve(t, src, "")
	resp, err := http.Get(hs.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan Snapshot)
	go func() { // ends when the test server closes the stream
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var s Snapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Errorf("event %q: %v", data, err)
				return
			}
			events <- s
		}
	}()
	next := func(what string, ok func(Snapshot) bool) Snapshot {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case s, open := <-events:
				if !open {
					t.Fatalf("stream ended waiting for %s", what)
				}
				if ok(s) {
					return s
				}
			case <-deadline:
				t.Fatalf("no event with %s", what)
			}
		}
	}
	version := func(s Snapshot) string {
		if len(s.Nodes) == 0 || s.Nodes[0].Report == nil {
			return ""
		}
		return s.Nodes[0].Report.Apps["web"].Version
	}
	next("1.0.0", func(s Snapshot) bool { return version(s) == "1.0.0" && s.Error == "" })
	src.set("1.1.0", nil)
	src.wakes <- struct{}{}
	next("1.1.0", func(s Snapshot) bool { return version(s) == "1.1.0" })
	src.set("", errors.New("fetch main of https://ops:hunter2@git.example.com/fleet.git: connection refused"))
	src.wakes <- struct{}{}
	s := next("the error", func(s Snapshot) bool { return s.Error != "" })
	if version(s) != "1.1.0" || strings.Contains(s.Error, "hunter2") || !strings.Contains(s.Error, "connection refused") {
		t.Fatalf("after a failed read: version %q, error %q; want the last good 1.1.0 and the error, redacted", version(s), s.Error)
	}
	src.set("1.1.0", nil)
	src.wakes <- struct{}{}
	next("recovery", func(s Snapshot) bool { return s.Error == "" && version(s) == "1.1.0" })
	src.wakes <- struct{}{} // nothing changed: no event
	src.set("1.2.0", nil)
	src.wakes <- struct{}{}
	if s := next("an event", func(Snapshot) bool { return true }); version(s) != "1.2.0" {
		t.Fatalf("an unchanged fleet sent an event (%s), want the next one to be 1.2.0", version(s))
	}
}
