package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/release"
)

// bin holds the binaries built once: "reconciler" and the workload at each
// version in versions (a version ending in "-broken" fails its health check).
var bin = map[string]string{}

var versions = []string{"1.0.0", "1.1.0", "1.2.0-broken", "1.3.0"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agent-e2e-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		err := build(dir)
		if err == nil {
			err = makeReleases(dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func build(dir string) error {
	out := filepath.Join(dir, "reconciler")
	if err := gobuild(out, "", "../../cmd/reconciler"); err != nil {
		return err
	}
	bin["reconciler"] = out
	for _, v := range versions {
		flags := "-X main.version=" + v
		if strings.HasSuffix(v, "-broken") {
			flags += " -X main.broken=true"
		}
		out := filepath.Join(dir, "workload-"+v)
		if err := gobuild(out, flags, "../../examples/workload"); err != nil {
			return err
		}
		bin[v] = out
	}
	return nil
}

func gobuild(out, ldflags, pkg string) error {
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// releases is the directory of signed artifacts made once by TestMain,
// web-<version>.tar.gz and .sig, signed by the key whose public half is
// trustKey.
var releases, trustKey, keyDir string

// makeReleases signs a key pair and packs and signs every version of the
// workload with the reconciler binary, as a release pipeline would.
func makeReleases(dir string) error {
	keyDir, releases, trustKey = dir, filepath.Join(dir, "releases"), filepath.Join(dir, "release.pub")
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return err
	}
	if err := cli("keygen", "--output-key-prefix", filepath.Join(dir, "release")); err != nil {
		return err
	}
	for _, v := range versions {
		if err := packRelease(dir, "web", v); err != nil {
			return err
		}
	}
	return nil
}

// packRelease packs and signs the workload at version v as app into
// releases/<app>-<v>.tar.gz; dir holds the signing key.
func packRelease(dir, app, v string) error {
	stage := filepath.Join(dir, "stage-"+app+"-"+v)
	if err := stageWorkload(stage, app, v); err != nil {
		return err
	}
	art := filepath.Join(releases, app+"-"+v+".tar.gz")
	if err := cli("release", "pack", stage, "--app", app, "--version", v, "-o", art); err != nil {
		return err
	}
	return cli("sign", "--key", filepath.Join(dir, "release.key"), art)
}

// stageWorkload lays out the release directory of the workload at version
// v as app, listening on ${PORT_<app>} (or ${PORT} for app web).
func stageWorkload(stage, app, v string) error {
	if err := os.MkdirAll(filepath.Join(stage, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.Link(bin[v], filepath.Join(stage, "bin", "workload")); err != nil {
		return err
	}
	port := "${PORT}"
	if app != "web" {
		port = "${PORT_" + app + "}"
	}
	m := release.Manifest{App: app, Version: v, Command: []string{"bin/workload", "-drain", "5s"},
		Listen:       []release.Listener{{Name: "http", Address: "127.0.0.1:" + port}},
		Env:          map[string]string{"WORKLOAD_NODE": "${NODE_LABEL}"},
		DrainTimeout: "5s"}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(stage, release.ManifestName), mj, 0o644)
}

// cli runs the reconciler binary (not the agent).
func cli(args ...string) error {
	cmd := exec.Command(bin["reconciler"], args...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=", "RECONCILER_PASSWORD=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("reconciler %v: %v\n%s", args, err, b)
	}
	return nil
}

// agentProc is a running `reconciler agent`.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startAgent runs the agent with args; its output goes to log.
func startAgent(t testing.TB, log io.Writer, args ...string) *agentProc {
	cmd := exec.Command(bin["reconciler"], append([]string{"agent"}, args...)...)
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

// killWorkloads kills every process the agent's state records.
func killWorkloads(stateDir string) {
	st, err := state.Open(stateDir)
	if err != nil {
		return
	}
	for _, a := range st.Get().Apps {
		if a.Running != nil {
			for _, pid := range a.Running.PIDs {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	}
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

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
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
