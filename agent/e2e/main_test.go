package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/internal/fleetlab"
)

// lab is built once: the reconciler binary, a key pair and the signed
// releases of app web, listening on ${PORT}, at 1.0.0, 1.1.0, 1.2.0-broken
// (which fails its health check) and 1.3.0.
var lab *fleetlab.Lab

func TestMain(m *testing.M) {
	os.Exit(fleetlab.Main(fleetlab.Options{Root: "../..",
		Versions: []string{"1.0.0", "1.1.0", "1.2.0-broken", "1.3.0"},
		Broken:   map[string]bool{"1.2.0-broken": true},
		Env:      map[string]string{"WORKLOAD_NODE": "${NODE_LABEL}"}},
		func(l *fleetlab.Lab) int { lab = l; return m.Run() }))
}

// agentProc is a running `reconciler agent`. The tests start it themselves,
// not with lab.StartAgent: they choose its ports and flags per start (--once)
// and check its exit code.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startAgent runs the agent with args; its output goes to log.
func startAgent(t testing.TB, log io.Writer, args ...string) *agentProc {
	cmd := exec.Command(lab.Reconciler, append([]string{"agent"}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done })
	return p
}

func (p *agentProc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// wait waits for the agent to exit and returns its exit code.
func (p *agentProc) wait(t *testing.T) int {
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit")
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// workloadPID is the current workload pid recorded in the state.
func workloadPID(t testing.TB, stateDir, app string) int {
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	a := st.App(app)
	if a.Running == nil || len(a.Running.PIDs) == 0 {
		return 0
	}
	return a.Running.PIDs[0]
}

// freePort is a loopback port nobody listens on right now.
func freePort(t testing.TB) string {
	p, err := fleetlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// get returns the trimmed body of url on a fresh connection.
func get(url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), err
}

// load requests url on fresh connections until stopped, and counts.
type load struct {
	cancel        context.CancelFunc
	done          chan struct{}
	total, failed int
	firstErr      error
}

func startLoad(url string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			l.total++
			if _, err := get(url); err != nil {
				l.failed++
				if l.firstErr == nil {
					l.firstErr = err
				}
			}
		}
	}()
	return l
}

func (l *load) stop() { l.cancel(); <-l.done }
