package e2e

import (
	"bytes"
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
	"github.com/fleetops/reconciler/signing"
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
		if err := build(dir); err != nil {
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

// signer makes signed release artifacts in a directory.
type signer struct {
	dir    string
	pubKey string // path of the trusted public key
	key    *signing.PrivateKey
}

func newSigner(t *testing.T) *signer {
	priv, pub, err := signing.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.LoadPrivateKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &signer{dir: t.TempDir(), key: key}
	s.pubKey = filepath.Join(s.dir, "release.pub")
	if err := os.WriteFile(s.pubKey, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// workload packs and signs the example workload at version v as app "web";
// the artifact is <dir>/web-<v>.tar.gz with a .sig beside it.
func (s *signer) workload(t *testing.T, v string) {
	rel := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rel, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin[v])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "bin", "workload"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	m := release.Manifest{App: "web", Version: v, Command: []string{"bin/workload", "-drain", "5s"},
		Listen:       []release.Listener{{Name: "http", Address: "127.0.0.1:${PORT}"}},
		Env:          map[string]string{"WORKLOAD_NODE": "${NODE_LABEL}"},
		DrainTimeout: "5s"}
	mj, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(rel, release.ManifestName), mj, 0o644); err != nil {
		t.Fatal(err)
	}
	var art bytes.Buffer
	if err := release.Pack(rel, "web", v, &art); err != nil {
		t.Fatal(err)
	}
	sig, err := signing.Sign(bytes.NewReader(art.Bytes()), s.key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dir, "web-"+v+".tar.gz")
	if err := os.WriteFile(path, art.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".sig", sig, 0o644); err != nil {
		t.Fatal(err)
	}
}

// agentProc is a running `reconciler agent`.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startAgent runs the agent with args; its output goes to log.
func startAgent(t *testing.T, log io.Writer, args ...string) *agentProc {
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
func workloadPID(t *testing.T, stateDir, app string) int {
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

func freePort(t *testing.T) string {
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
