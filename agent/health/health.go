package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/release"
)

// Statuses a JSON health body may report, best first.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
	StatusError    = "error"
)

// ErrAgentTarget is returned (wrapped) for a target that is a reconciler
// agent's own listener (/healthz, /metrics): its answer says the agent is up,
// nothing about the workload.
var ErrAgentTarget = errors.New("the target is the reconciler agent's own listener, not the workload")

// ErrNotThisNode is returned (wrapped) for an HTTP or TCP target that is
// not on this node: a health check asks the workload on its own node, and
// the fleet repo may not make every node connect to another host.
var ErrNotThisNode = errors.New("the target is not on this node")

// AgentHeader is the header a reconciler agent puts on every answer of its
// own listener; a health answer that carries it is refused.
const AgentHeader = "Reconciler-Agent"

// ErrOtherVersion is returned (wrapped) by Probe when the answer came from a
// version other than Check.Version.
var ErrOtherVersion = errors.New("answered by another version")

// Check is one health check. Exactly one of HTTP, TCP and Exec is set.
type Check struct {
	HTTP string   // URL; passes on 2xx and an acceptable JSON "status"
	TCP  string   // host:port; passes when it connects
	Exec []string // argv; passes on exit 0
	Dir  string   // working directory of Exec
	Env  []string // environment of Exec (nil: the agent's, without its settings and secrets: RECONCILER_*, COSIGN_*)

	// RequiredStatus is the worst acceptable JSON status: "ok" (default)
	// or "degraded".
	RequiredStatus string
	// Retries is how many more attempts follow a failed one (0: one attempt).
	Retries int
	// RetryDelay is the wait between attempts (default 1s).
	RetryDelay time.Duration
	// Timeout bounds one attempt (default 5s).
	Timeout time.Duration
	// Version, when set, is the version expected in the JSON body's
	// "version" field. Answers from another version are asked again every
	// OtherVersionDelay (default 20ms) without using up a retry.
	Version string
	// Replacing, when set, narrows that: only an answer that names this
	// version (the one being replaced, still serving on a shared socket) is
	// asked again; any other answer is judged, so a workload that reports
	// its version in its own way ("dev", "1.1.0+build.7") still passes.
	Replacing         string
	OtherVersionDelay time.Duration

	// Self are the agent's own listeners (/healthz, /metrics): an HTTP or
	// TCP target that is one of them, under any name of this host
	// (localhost, 127.0.0.1, [::1], 0.0.0.0, an address of its interfaces
	// when the agent listens on all), is refused with ErrAgentTarget.
	Self []net.Addr

	probe func(context.Context) error // tests: replaces Probe
}

// Run probes until an attempt passes, the retries are used up or ctx ends,
// and returns the last attempt's error.
func (c Check) Run(ctx context.Context) error {
	failures := 0
	var last error // the last answer not cut short by ctx
	probe := c.Probe
	if c.probe != nil {
		probe = c.probe
	}
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return stopped(ctx, last, err)
		}
		last = err
		if errors.Is(err, release.ErrOutsideRelease) || errors.Is(err, ErrAgentTarget) || errors.Is(err, ErrNotThisNode) {
			return err // asking again changes nothing
		}
		delay := c.retryDelay()
		if errors.Is(err, ErrOtherVersion) {
			delay = c.otherVersionDelay()
		} else if failures++; failures > c.Retries {
			return fmt.Errorf("%w (after %d attempts)", err, failures)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return stopped(ctx, last, err)
		case <-t.C:
		}
	}
}

// stopped is Run's error when ctx ended: the last real answer, and why it
// stopped waiting.
func stopped(ctx context.Context, last, err error) error {
	if last == nil {
		last = err
	}
	return fmt.Errorf("%w (stopped waiting: %w)", last, context.Cause(ctx))
}

// Probe makes one attempt.
func (c Check) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	switch {
	case c.HTTP != "":
		return c.probeHTTP(ctx)
	case c.TCP != "":
		return c.probeTCP(ctx)
	case len(c.Exec) > 0:
		return c.probeExec(ctx)
	}
	return errors.New("health check has no http, tcp or exec target")
}

func (c Check) probeHTTP(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTP, nil)
	if err != nil {
		return fmt.Errorf("health %s: %w", c.HTTP, err)
	}
	// A fresh connection per attempt: a kept-alive one would keep asking the
	// process that answered first. Redirects are not followed: a 3xx is an
	// answer (not healthy), never a way to make the check ask elsewhere.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: c.dial},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health %s: %w", c.HTTP, err)
	}
	defer resp.Body.Close()
	if node := resp.Header.Get(AgentHeader); node != "" {
		return fmt.Errorf("health %s: %w: answered by the agent of node %q; point the health check at the workload's own endpoint",
			c.HTTP, ErrAgentTarget, node)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("health %s: read body: %w", c.HTTP, err)
	}
	return c.judge(resp.StatusCode, body)
}

// fromOtherVersion reports whether an answer naming version v came from
// another version than the one checked. A leading "v" does not count.
func (c Check) fromOtherVersion(v string) bool {
	same := func(a, b string) bool { return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v") }
	switch {
	case v == "" || c.Version == "" || same(v, c.Version):
		return false
	case c.Replacing != "":
		return same(v, c.Replacing)
	}
	return true
}

// judge decides from an HTTP answer.
func (c Check) judge(code int, body []byte) error {
	var doc struct {
		Status  string `json:"status"`
		Version string `json:"version"`
	}
	isJSON := json.Unmarshal(body, &doc) == nil
	if isJSON && c.fromOtherVersion(doc.Version) {
		return fmt.Errorf("health %s: %w %s, want %s", c.HTTP, ErrOtherVersion, doc.Version, c.Version)
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("health %s: status %d %q", c.HTTP, code, truncate(body))
	}
	if isJSON && doc.Status != "" && rank(doc.Status) > rank(c.requiredStatus()) {
		return fmt.Errorf("health %s: status %q, required %q", c.HTTP, doc.Status, c.requiredStatus())
	}
	return nil
}

func (c Check) probeTCP(ctx context.Context) error {
	conn, err := c.dial(ctx, "tcp", c.TCP)
	if err != nil {
		return fmt.Errorf("health tcp %s: %w", c.TCP, err)
	}
	return conn.Close()
}

func (c Check) probeExec(ctx context.Context) error {
	// The spec's or the release's check, node variables substituted: it
	// must name a program of the release in Dir (symlinks resolved).
	path, err := release.Program(c.Dir, c.Exec[0])
	if err != nil {
		return fmt.Errorf("health exec %v: %w (name a program of the release, relative to it)", c.Exec, err)
	}
	cmd := exec.CommandContext(ctx, path, c.Exec[1:]...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	if cmd.Env == nil {
		cmd.Env = agentEnviron()
	}
	// Its own process group: a check cut short by its timeout is killed
	// with what it forked, not just its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("health exec %v: %w: %q", c.Exec, err, truncate(out))
	}
	return nil
}

// rank orders statuses from best (0) to worst; unknown ones are worst.
func rank(status string) int {
	switch status {
	case StatusOK:
		return 0
	case StatusDegraded:
		return 1
	}
	return 2
}

func (c Check) requiredStatus() string {
	if c.RequiredStatus == "" {
		return StatusOK
	}
	return c.RequiredStatus
}

func (c Check) retryDelay() time.Duration {
	if c.RetryDelay <= 0 {
		return time.Second
	}
	return c.RetryDelay
}

func (c Check) otherVersionDelay() time.Duration {
	if c.OtherVersionDelay <= 0 {
		return 20 * time.Millisecond
	}
	return c.OtherVersionDelay
}

func (c Check) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 5 * time.Second
	}
	return c.Timeout
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// dial connects to addr (host:port) for a probe, only on this node: every
// address the host resolves to must be one of this node's (loopback, an
// interface's) and none may reach c.Self, or the probe is refused
// (ErrNotThisNode, ErrAgentTarget) without connecting. It dials the
// addresses it checked, so a name that resolves again differently cannot
// lead elsewhere.
func (c Check) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, network, port)
	if err != nil {
		return nil, err
	}
	var ips []net.IPAddr
	if ip, zone, _ := strings.Cut(host, "%"); net.ParseIP(ip) != nil {
		ips = []net.IPAddr{{IP: net.ParseIP(ip), Zone: zone}}
	} else if host == "" {
		ips = []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}
	} else if ips, err = net.DefaultResolver.LookupIPAddr(ctx, host); err != nil {
		return nil, err
	}
	for _, ip := range ips {
		target := net.JoinHostPort(ip.IP.String(), port)
		for _, self := range c.Self {
			if ta, ok := self.(*net.TCPAddr); ok && ta.Port == pn && reaches(ip.IP, ta.IP) {
				return nil, fmt.Errorf("%w (%s is the agent's /healthz and /metrics address %s); point the health check at the workload's own endpoint",
					ErrAgentTarget, target, self)
			}
		}
		if !ip.IP.IsLoopback() && !ip.IP.IsUnspecified() && !isInterfaceAddr(ip.IP) {
			return nil, fmt.Errorf("%w: %s is %s, not an address of this node; a health check asks the workload on its own node (127.0.0.1, localhost, [::1] or an address of this node's interfaces)",
				ErrNotThisNode, addr, ip.IP)
		}
	}
	var d net.Dialer
	var errs []error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// reaches reports whether a connection to target (same port) reaches a
// listener bound to bound.
func reaches(target, bound net.IP) bool {
	local := func(ip net.IP) bool { return ip.IsLoopback() || ip.IsUnspecified() }
	switch {
	case bound == nil || bound.IsUnspecified():
		return local(target) || isInterfaceAddr(target)
	case bound.IsLoopback():
		return local(target)
	}
	return bound.Equal(target)
}

// isInterfaceAddr reports whether ip is an address of one of this host's
// interfaces.
func isInterfaceAddr(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// agentEnviron is the agent's environment without its own settings and
// secrets (RECONCILER_*, such as RECONCILER_GIT_PASSWORD, and COSIGN_*), as
// workloads and hooks get it.
func agentEnviron() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RECONCILER_") && !strings.HasPrefix(kv, "COSIGN_") {
			env = append(env, kv)
		}
	}
	return env
}
