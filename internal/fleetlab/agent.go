package fleetlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/reconciler"
)

// Agent is one node: a `reconciler agent` process and its workloads.
type Agent struct {
	Name     string
	StateDir string
	Port     int    // the workload's port (node variable PORT)
	Healthz  string // address of the agent's /healthz
	Log      string // the agent's log file
	// Events is the workloads' event log (WORKLOAD_EVENTS, see
	// examples/workload and ReadEvents).
	Events string
	// Env is extra environment for the agent and so for its workloads
	// (e.g. WORKLOAD_START_DELAY=2s); set it before Start.
	Env []string

	args []string
	lab  *Lab
	cmd  *exec.Cmd
	done chan struct{}
}

// StartAgent starts the agent of node name against repo, with the node
// variable PORT set to a free port; extra flags are appended.
func (l *Lab) StartAgent(name, repo string, extra ...string) (*Agent, error) {
	a, err := l.NewAgent(name, repo, extra...)
	if err != nil {
		return nil, err
	}
	return a, a.Start()
}

// NewAgent prepares the agent of node name as StartAgent does, without
// starting it: set Env, then Start. Close kills it like the others.
func (l *Lab) NewAgent(name, repo string, extra ...string) (*Agent, error) {
	port, err := l.freePort()
	if err != nil {
		return nil, err
	}
	hport, err := l.freePort()
	if err != nil {
		return nil, err
	}
	a := &Agent{Name: name, StateDir: filepath.Join(l.nodesDir, name), Port: port,
		Healthz: "127.0.0.1:" + strconv.Itoa(hport), Log: filepath.Join(l.nodesDir, name+".log"),
		Events: filepath.Join(l.nodesDir, name+".events"), lab: l}
	a.args = append([]string{"agent", "--repo", repo, "--node", name, "--state-dir", a.StateDir,
		"--trust-key", l.PubKey, "--listen", a.Healthz, "--var", "PORT=" + strconv.Itoa(port),
		"--log-format", "text"}, extra...)
	if err := os.MkdirAll(filepath.Dir(a.StateDir), 0o755); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.agents = append(l.agents, a)
	l.mu.Unlock()
	return a, nil
}

// Start (re)starts the agent process with its flags; its log is appended to.
func (a *Agent) Start() error {
	log, err := os.OpenFile(a.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(a.lab.Reconciler, a.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"WORKLOAD_EVENTS="+a.Events)
	cmd.Env = append(cmd.Env, a.Env...)
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start agent %s: %w", a.Name, err)
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(a.done) }()
	return nil
}

// Kill sends SIGKILL to the agent (its workloads keep running) and waits.
func (a *Agent) Kill() { a.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the agent to exit.
func (a *Agent) Stop() { a.signal(syscall.SIGTERM) }

// Pause stops the agent with SIGSTOP (its workloads keep running): a
// frozen or suspended holder. Resume continues it.
func (a *Agent) Pause() error { return a.send(syscall.SIGSTOP) }

// Resume continues a paused agent with SIGCONT.
func (a *Agent) Resume() error { return a.send(syscall.SIGCONT) }

// PID is the agent process's id (0 before Start).
func (a *Agent) PID() int {
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

func (a *Agent) send(sig syscall.Signal) error {
	if !a.Running() {
		return fmt.Errorf("agent %s is not running", a.Name)
	}
	if err := a.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("agent %s: %s: %w", a.Name, sig, err)
	}
	return nil
}

func (a *Agent) signal(sig syscall.Signal) {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		_ = a.cmd.Process.Signal(syscall.SIGCONT) // a paused agent must see it
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Running reports whether the agent process is alive.
func (a *Agent) Running() bool {
	select {
	case <-a.done:
		return false
	default:
		return a.cmd != nil
	}
}

// Report is the agent's latest node report, from its /healthz.
func (a *Agent) Report() (reconciler.NodeReport, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + a.Healthz + "/healthz")
	if err != nil {
		return reconciler.NodeReport{}, err
	}
	defer resp.Body.Close()
	var h agent.Healthz
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return reconciler.NodeReport{}, fmt.Errorf("agent %s /healthz: %w", a.Name, err)
	}
	return h.Report, nil
}

// Serving is the version the node's workload answers on GET /.
func (a *Agent) Serving() (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", a.Port))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// Agents returns the agents started so far.
func (l *Lab) Agents() []*Agent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Agent(nil), l.agents...)
}

// Close kills every agent and then every workload their state records.
func (l *Lab) Close() error {
	var errs []error
	for _, a := range l.Agents() {
		a.Kill()
		errs = append(errs, KillWorkloads(a.StateDir))
	}
	return errors.Join(errs...)
}

// KillWorkloads kills every workload process the agent state in stateDir
// records as running.
func KillWorkloads(stateDir string) error {
	st, err := state.Open(stateDir)
	if err != nil {
		return err
	}
	for _, app := range st.Get().Apps {
		if app.Running == nil {
			continue
		}
		for _, pid := range app.Running.PIDs {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // the workload's process group
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}
