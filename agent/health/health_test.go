package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/release"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name     string
		required string
		version  string
		code     int
		body     string
		want     string // "" passes; otherwise a substring of the error
	}{
		{"2xx plain", "", "", 200, "fine", ""},
		{"5xx", "", "", 503, "down", "status 503"},
		{"json ok", "ok", "", 200, `{"status":"ok"}`, ""},
		{"json degraded, ok required", "ok", "", 200, `{"status":"degraded"}`, `required "ok"`},
		{"json degraded, degraded allowed", "degraded", "", 200, `{"status":"degraded"}`, ""},
		{"json error", "degraded", "", 200, `{"status":"error"}`, `status "error"`},
		{"json unknown status", "degraded", "", 200, `{"status":"meh"}`, `status "meh"`},
		{"json without status", "ok", "", 200, `{"up":true}`, ""},
		{"expected version", "ok", "2", 200, `{"status":"ok","version":"2"}`, ""},
		{"other version", "ok", "2", 200, `{"status":"ok","version":"1"}`, "another version 1"},
		{"other version failing", "ok", "2", 503, `{"status":"error","version":"1"}`, "another version 1"},
		{"expected version failing", "ok", "2", 503, `{"status":"error","version":"2"}`, "status 503"},
		{"no version in body", "ok", "2", 200, `{"status":"ok"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Check{HTTP: "http://x/health", RequiredStatus: tt.required, Version: tt.version}
			err := c.judge(tt.code, []byte(tt.body))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("judge: %v, want pass", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("judge: %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// server answers with the bodies in order, then repeats the last one.
func server(t *testing.T, answers ...string) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		a := answers[min(i, len(answers)-1)]
		code, body, _ := strings.Cut(a, " ")
		var c int
		fmt.Sscan(code, &c)
		w.WriteHeader(c)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func TestRunRetries(t *testing.T) {
	s, n := server(t, `503 {"status":"error"}`, `503 {"status":"error"}`, `200 {"status":"ok"}`)
	c := Check{HTTP: s.URL, Retries: 2, RetryDelay: time.Millisecond}
	if err := c.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
}

func TestRunGivesUp(t *testing.T) {
	s, n := server(t, `503 {"status":"error"}`)
	c := Check{HTTP: s.URL, Retries: 2, RetryDelay: time.Millisecond}
	err := c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("Run: %v, want failure after 3 attempts", err)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
}

func TestRunOtherVersionDoesNotUseRetries(t *testing.T) {
	old := `200 {"status":"ok","version":"1"}`
	s, n := server(t, old, old, old, old, old, `200 {"status":"ok","version":"2"}`)
	c := Check{HTTP: s.URL, Version: "2", RetryDelay: time.Hour, OtherVersionDelay: time.Millisecond}
	if err := c.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := n.Load(); got != 6 {
		t.Fatalf("attempts = %d, want 6", got)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	s, _ := server(t, `200 {"status":"ok","version":"1"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c := Check{HTTP: s.URL, Version: "2", OtherVersionDelay: time.Millisecond}
	err := c.Run(ctx)
	if !errors.Is(err, ErrOtherVersion) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v, want other version and deadline", err)
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := (Check{TCP: addr}).Probe(context.Background()); err != nil {
		t.Fatalf("Probe open port: %v", err)
	}
	ln.Close()
	if err := (Check{TCP: addr}).Probe(context.Background()); err == nil {
		t.Fatal("Probe closed port: passed")
	}
}

// release writes an unpacked release with bin/ok and bin/sick, a symlink
// bin/sh to /bin/sh, and returns its directory.
func releaseDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"ok": "#!/bin/sh\nexit 0\n", "sick": "#!/bin/sh\necho sick; exit 3\n"} {
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExec(t *testing.T) {
	dir := releaseDir(t)
	if err := (Check{Exec: []string{"bin/ok"}, Dir: dir}).Probe(context.Background()); err != nil {
		t.Fatalf("bin/ok: %v", err)
	}
	err := (Check{Exec: []string{"bin/sick"}, Dir: dir}).Probe(context.Background())
	if err == nil || !strings.Contains(err.Error(), "sick") {
		t.Fatalf("failing command: %v, want its output in the error", err)
	}
}

// TestExecRunsOnlyProgramsOfTheRelease: a check (the spec's, or a
// manifest's after node variables) naming a program outside the release
// is refused at once, without running it and without retries; it ran
// before (a spec's ["/bin/sh", "-c", ...] ran on every node).
func TestExecRunsOnlyProgramsOfTheRelease(t *testing.T) {
	dir := releaseDir(t)
	victim := filepath.Join(t.TempDir(), "ran")
	for _, argv := range [][]string{
		{"/bin/sh", "-c", "touch " + victim},
		{"sh", "-c", "touch " + victim},
		{"true"},
		{"../../../../../../bin/sh", "-c", "touch " + victim},
		{"bin/../../../../../../../bin/sh", "-c", "touch " + victim},
		{"bin/sh", "-c", "touch " + victim}, // a symlink leaving the release
	} {
		c := Check{Exec: argv, Dir: dir, Retries: 5, RetryDelay: time.Second}
		start := time.Now()
		err := c.Run(context.Background())
		if err == nil || !errors.Is(err, release.ErrOutsideRelease) || !strings.Contains(err.Error(), "name a program of the release") {
			t.Errorf("%q: %v, want refused", argv, err)
		}
		if time.Since(start) > 500*time.Millisecond {
			t.Errorf("%q: refused after %v: retried", argv, time.Since(start))
		}
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("a program outside the release ran")
	}
	if err := (Check{Exec: []string{"bin/ok"}}).Probe(context.Background()); err == nil {
		t.Fatal("exec check without a release directory passed")
	}
}

func TestNoTarget(t *testing.T) {
	if err := (Check{}).Probe(context.Background()); err == nil {
		t.Fatal("empty check passed")
	}
}

func TestReplacingAsksAgainOnlyForTheOldVersion(t *testing.T) {
	for _, tt := range []struct {
		answer string
		other  bool
	}{
		{"1", true},              // the version being replaced, on the shared socket
		{"v1", true},             // a leading "v" does not count
		{"2", false},             // the new one
		{"v2", false},            // the new one, written with a "v"
		{"dev", false},           // a workload that names itself its own way
		{"2.0.0+build.7", false}, // ditto
		{"", false},              // no version in the answer
	} {
		c := Check{HTTP: "http://x/health", Version: "2", Replacing: "1"}
		err := c.judge(200, []byte(`{"status":"ok","version":"`+tt.answer+`"}`))
		if got := errors.Is(err, ErrOtherVersion); got != tt.other {
			t.Errorf("answer %q: other version = %v (%v), want %v", tt.answer, got, err, tt.other)
		}
	}
}

// TestAgentAnswersAreRefused: an answer carrying the agent's header (from
// another node's agent, through a proxy, ...) proves nothing and is
// refused; a redirect is not followed (it could lead there), and is not
// healthy.
func TestAgentAnswersAreRefused(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(AgentHeader, "n2")
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer agent.Close()
	redirect := httptest.NewServer(http.RedirectHandler(agent.URL+"/healthz", http.StatusFound))
	defer redirect.Close()
	err := (Check{HTTP: agent.URL + "/healthz", Retries: 5, RetryDelay: time.Second}).Run(context.Background())
	if !errors.Is(err, ErrAgentTarget) || !strings.Contains(err.Error(), `agent of node "n2"`) {
		t.Errorf("agent's answer: %v", err)
	}
	err = (Check{HTTP: redirect.URL + "/health"}).Probe(context.Background())
	if err == nil || !strings.Contains(err.Error(), "status 302") {
		t.Errorf("redirect: %v, want not followed and not healthy", err)
	}
}

// TestReaches: which targets reach a listener bound to which address.
func TestReaches(t *testing.T) {
	ip := net.ParseIP
	for _, c := range []struct {
		target, bound string
		want          bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"::1", "127.0.0.1", true},
		{"0.0.0.0", "127.0.0.1", true},
		{"127.0.0.1", "0.0.0.0", true},
		{"::", "::", true},
		{"10.1.2.3", "127.0.0.1", false},
		{"10.1.2.3", "10.1.2.3", true},
		{"10.1.2.4", "10.1.2.3", false},
		{"192.0.2.1", "0.0.0.0", false}, // not an address of this host
	} {
		if got := reaches(ip(c.target), ip(c.bound)); got != c.want {
			t.Errorf("reaches(%s, bound %s) = %v, want %v", c.target, c.bound, got, c.want)
		}
	}
	// An address of this host's interfaces reaches a listener on all.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !reaches(n.IP, net.IPv4zero) {
			t.Errorf("interface address %s does not reach 0.0.0.0", n.IP)
		}
	}
	self := []net.Addr{&net.TCPAddr{IP: net.IPv4zero, Port: 9180}}
	for _, target := range []string{"http://localhost:9180/healthz", "http://[::1]:9180/metrics", "http://0.0.0.0:9180/"} {
		if err := (Check{HTTP: target, Self: self}).Probe(context.Background()); !errors.Is(err, ErrAgentTarget) {
			t.Errorf("%s with the agent on 0.0.0.0:9180: %v", target, err)
		}
	}
	if err := (Check{TCP: "127.0.0.1:9181", Self: self, Timeout: 100 * time.Millisecond}).Probe(context.Background()); errors.Is(err, ErrAgentTarget) {
		t.Errorf("another port: %v", err)
	}
}

// TestTargetsOnlyOnThisNode: the fleet repo may not make every node
// connect elsewhere (a metadata service, another host's admin port): an
// HTTP or TCP target that is not an address of this node is refused at
// once, without connecting; before, it was asked.
func TestTargetsOnlyOnThisNode(t *testing.T) {
	for _, c := range []Check{
		{HTTP: "http://169.254.169.254/latest/meta-data/"},
		{HTTP: "https://192.0.2.1:8443/health"},
		{HTTP: "http://[2001:db8::1]/health"},
		{TCP: "198.51.100.7:22"},
	} {
		c.Retries, c.RetryDelay = 5, time.Second
		start := time.Now()
		err := c.Run(context.Background())
		if !errors.Is(err, ErrNotThisNode) || !strings.Contains(err.Error(), "not an address of this node") {
			t.Errorf("%s%s: %v, want refused", c.HTTP, c.TCP, err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("%s%s: refused after %v: retried", c.HTTP, c.TCP, time.Since(start))
		}
	}
}

// TestExecTimeoutKillsWhatTheCheckForked: a check cut short by its timeout
// is killed with its children; before, a forked child kept running (and
// held the output pipe until WaitDelay).
func TestExecTimeoutKillsWhatTheCheckForked(t *testing.T) {
	dir := releaseDir(t)
	pidFile := filepath.Join(t.TempDir(), "child")
	script := "#!/bin/sh\nsleep 60 &\necho $! > " + pidFile + "\nwait\n"
	if err := os.WriteFile(filepath.Join(dir, "bin", "hang"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	err := (Check{Exec: []string{"bin/hang"}, Dir: dir, Timeout: 300 * time.Millisecond}).Probe(context.Background())
	if err == nil {
		t.Fatal("a hanging check passed")
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		s := string(st)
		if err != nil || strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check's child %s still runs after its timeout", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc
	}
}

// TestExecDoesNotGetTheAgentsSecrets: an exec check gets the agent's
// environment without its settings and secrets, as workloads and hooks
// do; before, it got RECONCILER_GIT_PASSWORD and COSIGN_PASSWORD.
func TestExecDoesNotGetTheAgentsSecrets(t *testing.T) {
	t.Setenv("RECONCILER_GIT_PASSWORD", "s3cret")
	t.Setenv("COSIGN_PASSWORD", "s3cret")
	t.Setenv("HEXEC_PLAIN", "kept")
	dir := releaseDir(t)
	script := "#!/bin/sh\nenv | grep -q s3cret && { echo leaked; exit 1; }\ntest \"$HEXEC_PLAIN\" = kept\n"
	if err := os.WriteFile(filepath.Join(dir, "bin", "env"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (Check{Exec: []string{"bin/env"}, Dir: dir}).Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
}
