package otp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/health"
	"github.com/fleetops/reconciler/release"
)

// The counter fixture (examples/otp) is built once per source content and
// kept in the system's temp directory, so only the first run pays for
// rebar3 (about 10s).
var fixture struct {
	once sync.Once
	dir  string
	err  error
}

const fixtureSrc = "../../../examples/otp"

// fixtureDir returns the directory holding counter-<v>.tar.gz (and the
// artifact directory counter-<v>/) for 1.0.0 to 1.3.0, building them when
// needed. A missing erl, rebar3 or epmd fails the test (make deps installs
// them); only -short skips it, since building the fixture takes a while.
func fixtureDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the OTP fixture is built by the full suite (make test)")
	}
	fixture.once.Do(func() {
		for _, tool := range []string{"erl", "rebar3", "epmd"} {
			if _, err := exec.LookPath(tool); err != nil {
				fixture.err = fmt.Errorf("%s not found: install Erlang/OTP and rebar3 (make deps does: apt-get install erlang rebar3)", tool)
				return
			}
		}
		fixture.dir, fixture.err = buildFixture()
	})
	if fixture.err != nil {
		t.Fatalf("build the OTP fixture: %v", fixture.err)
	}
	return fixture.dir
}

func buildFixture() (string, error) {
	sum, err := hashTree(fixtureSrc)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "reconciler-otp-fixture-"+sum[:16])
	if _, err := os.Stat(filepath.Join(dir, "counter-1.3.0.tar.gz")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "reconciler-otp-fixture-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(fixtureSrc, "build.sh"), filepath.Join(tmp, "out")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("examples/otp/build.sh: %w\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "out"), dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "counter-1.3.0.tar.gz")); serr == nil {
			return dir, nil // another test process built it meanwhile
		}
		return "", err
	}
	return dir, nil
}

// hashTree hashes the names and contents of what build.sh reads.
func hashTree(root string) (string, error) {
	h := sha256.New()
	for _, top := range []string{"build.sh", "rebar.config", "config", "src", "versions"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %d\n", p, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// node is one test's BEAM node: its own epmd port, node name, cookie and
// HTTP port, and a driver whose roots live in the test's temp dir.
type node struct {
	t        *testing.T
	drv      *Driver
	dir      string // Options.Dir
	env      map[string]string
	httpPort int
	tarballs string
}

func newNode(t *testing.T) *node {
	t.Helper()
	tarballs := fixtureDir(t)
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	drv, err := New(Options{Dir: filepath.Join(dir, "otp"), StartTimeout: 30 * time.Second, ScriptTimeout: time.Minute, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, drv: drv, dir: filepath.Join(dir, "otp"), httpPort: freePort(t), tarballs: tarballs}
	epmdPort := freePort(t)
	n.env = map[string]string{
		// A private epmd per test: no clash with a developer's nodes or
		// with parallel tests, and it can be killed at the end.
		"ERL_EPMD_PORT":     strconv.Itoa(epmdPort),
		"COUNTER_NODE":      "t" + randHex(t, 6) + "@localhost",
		"COUNTER_COOKIE":    randHex(t, 16),
		"COUNTER_HTTP_PORT": strconv.Itoa(n.httpPort),
	}
	t.Cleanup(func() { n.cleanup(epmdPort) })
	return n
}

// release returns counter version v as the agent hands it to drivers: the
// fixture's artifact directory (release.json with driver "otp" and the relx
// tarball) packed as a reconciler release and unpacked again by package
// release. Env carries the test's node name, cookie and ports.
func (n *node) release(v string) driver.Release {
	n.t.Helper()
	a, _ := artifacts.LoadOrStore(v, &artifact{})
	art := a.(*artifact)
	art.once.Do(func() { art.dir, art.m, art.err = packAndUnpack(n.tarballs, v) })
	if art.err != nil {
		n.t.Fatal(art.err)
	}
	return driver.Release{App: "counter", Version: v, Dir: art.dir, Manifest: *art.m, Env: n.env}
}

// artifacts holds each version's unpacked artifact, made once per test
// process (release directories are read-only for drivers).
var (
	artifacts   sync.Map // version → *artifact
	artifactDir string   // made by TestMain
)

type artifact struct {
	once sync.Once
	dir  string
	m    *release.Manifest
	err  error
}

func packAndUnpack(tarballs, v string) (string, *release.Manifest, error) {
	packed := filepath.Join(artifactDir, "counter-"+v+".release.tar.gz")
	f, err := os.Create(packed)
	if err != nil {
		return "", nil, err
	}
	if err := release.Pack(filepath.Join(tarballs, "counter-"+v), "counter", v, f); err != nil {
		f.Close()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		return "", nil, err
	}
	dir := filepath.Join(artifactDir, "counter-"+v)
	m, err := release.Unpack(context.Background(), packed, dir, release.Want{App: "counter", Version: v}, release.Limits{})
	if err != nil {
		return "", nil, err
	}
	if m.Driver != "otp" {
		return "", nil, fmt.Errorf("counter %s: release.json driver = %q, want otp", v, m.Driver)
	}
	return dir, m, nil
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reconciler-otp-artifacts-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	artifactDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// healthy returns the HealthFunc of version v: the agent's own HTTP check
// of GET /health, which also wants v to be the version that answers.
func (n *node) healthy(v string) driver.HealthFunc {
	c := health.Check{HTTP: fmt.Sprintf("http://127.0.0.1:%d/health", n.httpPort), Version: v,
		Retries: 10, RetryDelay: 100 * time.Millisecond, Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return c.Run(ctx)
	}
}

// alive is a HealthFunc that only asks whether the node answers.
func (n *node) alive(ctx context.Context) error {
	if !n.script().alive(ctx) {
		return errors.New("node is down")
	}
	return nil
}

// script returns a start script of the node: any root will do, the node
// name and cookie are the same.
func (n *node) script() script {
	roots, _ := filepath.Glob(filepath.Join(n.dir, "counter", "*", "bin", "counter"))
	if len(roots) == 0 {
		return script{}
	}
	root := filepath.Dir(filepath.Dir(roots[0]))
	return n.drv.script(Data{Root: root, Release: "counter", Env: n.env})
}

// eval evaluates expr in the running node.
func (n *node) eval(expr string) string {
	n.t.Helper()
	out, err := n.script().eval(context.Background(), expr)
	if err != nil {
		n.t.Fatalf("eval %s: %v", expr, err)
	}
	return strings.ReplaceAll(lastLines(out, 1), " ", "")
}

// cleanup stops the node and its epmd, and fails the test if a process
// started from its directory survives (killing it).
func (n *node) cleanup(epmdPort int) {
	ctx := context.Background()
	if s := n.script(); s.root != "" && s.alive(ctx) {
		// init:stop() without `bin/counter stop`, which polls every second.
		if _, err := s.run(ctx, "rpc", "init", "stop"); err != nil {
			n.t.Errorf("cleanup: stop: %v", err)
		}
	}
	// The VM and run_erl go; epmd (started by the VM from the release's
	// ERTS, on the test's port) stays until told.
	for _, pid := range processesUnder(n.dir, false) {
		n.t.Errorf("cleanup: process %d still runs from %s; killing it", pid, n.dir)
		_ = syscallKill(pid)
	}
	cmd := exec.Command("epmd", "-kill")
	cmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(epmdPort))
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot connect") {
		n.t.Errorf("cleanup: epmd -kill: %v: %s", err, out)
	}
	for _, pid := range processesUnder(n.dir, true) {
		n.t.Errorf("cleanup: epmd %d still runs from %s; killing it", pid, n.dir)
		_ = syscallKill(pid)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
