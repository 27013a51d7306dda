package otp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent"
)

// TestFleet upgrades three BEAM nodes, each with its own `reconciler agent`
// process, by commits to a fleet repo, through the rollout coordinator
// (waves of one node under leases):
//
//   - 1.0.0 → 1.1.0: every VM upgraded by relup, OS pids unchanged, each
//     counter keeps its value and gains the step field;
//   - 1.1.0 → 1.2.0 (broken): the first node fails its health check and goes
//     back by relup, the rollout fails, an agent pushes the rollback commit;
//     every node ends on 1.1.0 with the same VM as at the start.
func TestFleet(t *testing.T) {
	t.Parallel()
	tarballs := fixtureDir(t)
	f := newFleet(t, tarballs, []string{"a", "b", "c"})

	f.push("1.0.0")
	f.waitAll("1.0.0")
	pids := map[string]int{}
	for i, n := range f.nodes {
		pids[n.name] = f.pid(n)
		for range i + 1 {
			f.eval(n, "counter_server:incr().")
		}
	}

	start := time.Now()
	f.push("1.1.0")
	f.waitAll("1.1.0")
	t.Logf("fleet of %d upgraded 1.0.0 -> 1.1.0 in waves of 1: %v from push to all healthy", len(f.nodes), time.Since(start).Round(time.Millisecond))
	for i, n := range f.nodes {
		want := fmt.Sprintf("{state,%d,1}", i+1)
		if pid, state := f.pid(n), f.eval(n, "sys:get_state(counter_server)."); pid != pids[n.name] || state != want {
			t.Errorf("node %s on 1.1.0: pid %d state %s, want pid %d state %s", n.name, pid, state, pids[n.name], want)
		} else {
			t.Logf("node %s: pid %d before and after, state %s", n.name, pid, state)
		}
	}
	// Node reports carry what release_handler says; audit counts its view.
	f.eventually(func() bool {
		for _, n := range f.nodes {
			if !slices.Contains(f.runtimeReleases(n), "1.1.0 permanent") || !slices.Contains(f.runtimeReleases(n), "1.0.0 old") {
				return false
			}
		}
		return true
	}, "every node report lists 1.1.0 permanent and 1.0.0 old")

	f.push("1.2.0")
	f.waitRollback("1.1.0")
	f.waitAll("1.1.0")
	for i, n := range f.nodes {
		want := fmt.Sprintf("{state,%d,1}", i+1)
		if pid, state := f.pid(n), f.eval(n, "sys:get_state(counter_server)."); pid != pids[n.name] || state != want {
			t.Errorf("node %s after the rollback: pid %d state %s, want pid %d state %s", n.name, pid, state, pids[n.name], want)
		}
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// fleet is a fleet repo, signed releases of the counter and one agent per
// node, all on this machine.
type fleet struct {
	t                  *testing.T
	dir, repo, work    string
	bin, pub, releases string
	env                []string // the agents' environment: cookie, epmd port
	nodes              []*fleetNode
}

type fleetNode struct {
	name, stateDir, port, healthz, nodeName string
	log                                     *os.File
}

func newFleet(t *testing.T, tarballs string, names []string) *fleet {
	dir := t.TempDir()
	f := &fleet{t: t, dir: dir, bin: filepath.Join(dir, "reconciler"), releases: filepath.Join(dir, "releases")}
	if out, err := exec.Command("go", "build", "-o", f.bin, "../../../cmd/reconciler").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	epmdPort := freePort(t)
	f.env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"COSIGN_PASSWORD=", "RECONCILER_PASSWORD=",
		"COUNTER_COOKIE="+randHex(t, 16), "ERL_EPMD_PORT="+strconv.Itoa(epmdPort))
	f.cli("keygen", "--output-key-prefix", filepath.Join(dir, "release"))
	f.pub = filepath.Join(dir, "release.pub")
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		f.packRelease(tarballs, v)
	}
	for _, name := range names {
		f.nodes = append(f.nodes, &fleetNode{name: name, stateDir: filepath.Join(dir, "state-"+name),
			port: strconv.Itoa(freePort(t)), healthz: "127.0.0.1:" + strconv.Itoa(freePort(t)),
			nodeName: "f" + name + randHex(t, 4) + "@localhost"})
	}
	f.repo = filepath.Join(dir, "fleet.git")
	f.work = filepath.Join(dir, "work")
	f.git("", "init", "-q", "--bare", "-b", "main", f.repo)
	f.git("", "clone", "-q", f.repo, f.work)
	f.git(f.work, "checkout", "-q", "-b", "main")
	t.Cleanup(func() { f.stop(epmdPort) })
	return f
}

// packRelease packs and signs counter v: the relx tarball and a release.json
// whose env takes the node's port and node name from its variables.
func (f *fleet) packRelease(tarballs, v string) {
	stage := filepath.Join(f.dir, "stage-"+v)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		f.t.Fatal(err)
	}
	name := "counter-" + v + ".tar.gz"
	if err := os.Link(filepath.Join(tarballs, name), filepath.Join(stage, name)); err != nil {
		f.t.Fatal(err)
	}
	manifest := fmt.Sprintf(`{"app": "counter", "version": %q, "driver": "otp",
  "env": {"COUNTER_HTTP_PORT": "${PORT}", "COUNTER_NODE": "${COUNTER_NODE}"}}`, v)
	if err := os.WriteFile(filepath.Join(stage, "release.json"), []byte(manifest), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.MkdirAll(f.releases, 0o755); err != nil {
		f.t.Fatal(err)
	}
	art := filepath.Join(f.releases, name)
	f.cli("release", "pack", stage, "--app", "counter", "--version", v, "-o", art)
	f.cli("sign", "--key", filepath.Join(f.dir, "release.key"), art)
}

// push commits the spec with counter at version v to main; the agents start
// on the first push.
func (f *fleet) push(v string) {
	var b strings.Builder
	fmt.Fprintf(&b, "package fleet\n\nnodes: {\n")
	for _, n := range f.nodes {
		fmt.Fprintf(&b, "\t%s: vars: {PORT: %q, COUNTER_NODE: %q}\n", n.name, n.port, n.nodeName)
	}
	fmt.Fprintf(&b, `}

apps: counter: {
	version: %q
	artifact: url: "file://%s/counter-\(version).tar.gz"
	rollout: batchSize: 1
	health: {
		http:       "http://127.0.0.1:${PORT}/health"
		retries:    10
		retryDelay: "100ms"
	}
}
`, v, f.releases)
	if f.nodes[0].log != nil { // not the first push: take the agents' commits
		f.git(f.work, "pull", "-q", "--rebase", "origin", "main")
	}
	if err := os.WriteFile(filepath.Join(f.work, "fleet.cue"), []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.git(f.work, "add", "fleet.cue")
	f.git(f.work, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "counter "+v)
	f.git(f.work, "push", "-q", "origin", "main")
	if f.nodes[0].log == nil {
		for _, n := range f.nodes {
			f.startAgent(n)
		}
	}
}

func (f *fleet) startAgent(n *fleetNode) {
	log, err := os.Create(filepath.Join(f.dir, "agent-"+n.name+".log"))
	if err != nil {
		f.t.Fatal(err)
	}
	n.log = log
	cmd := exec.Command(f.bin, "agent", "--repo", f.repo, "--node", n.name, "--state-dir", n.stateDir,
		"--trust-key", f.pub, "--listen", n.healthz, "--poll", "500ms", "--log-format", "text")
	cmd.Env, cmd.Stdout, cmd.Stderr = f.env, log, log
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	f.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		log.Close()
		if f.t.Failed() {
			b, _ := os.ReadFile(log.Name())
			f.t.Logf("agent %s log:\n%s", n.name, lastLines(string(b), 80))
		}
	})
}

// runtimeReleases is the counter's runtime releases in a node's /healthz, as
// "<version> <status>".
func (f *fleet) runtimeReleases(n *fleetNode) []string {
	resp, err := http.Get("http://" + n.healthz + "/healthz")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var h agent.Healthz
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return nil
	}
	var out []string
	for _, r := range h.Report.Apps["counter"].Releases {
		out = append(out, r.Version+" "+r.Status)
	}
	return out
}

// report is the counter's entry in a node's /healthz.
func (f *fleet) report(n *fleetNode) (version, state string) {
	resp, err := http.Get("http://" + n.healthz + "/healthz")
	if err != nil {
		return "", ""
	}
	defer resp.Body.Close()
	var h struct {
		Report struct {
			Apps map[string]struct{ Version, State string }
		}
	}
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, &h) != nil {
		return "", ""
	}
	a := h.Report.Apps["counter"]
	return a.Version, a.State
}

// waitAll waits until every node reports counter v healthy.
func (f *fleet) waitAll(v string) {
	f.t.Helper()
	f.eventually(func() bool {
		for _, n := range f.nodes {
			if got, state := f.report(n); got != v || state != "healthy" {
				return false
			}
		}
		return true
	}, "every node reports counter "+v+" healthy")
}

// waitRollback waits until main's spec targets v again (the rollback commit).
func (f *fleet) waitRollback(v string) {
	f.t.Helper()
	f.eventually(func() bool {
		out, err := exec.Command("git", "--git-dir", f.repo, "show", "main:fleet.cue").Output()
		return err == nil && strings.Contains(string(out), fmt.Sprintf("version: %q", v))
	}, "a rollback commit on main targets "+v)
	out, _ := exec.Command("git", "--git-dir", f.repo, "log", "-3", "--format=%s%n%b", "main").Output()
	f.t.Logf("main after the failed rollout:\n%s", strings.TrimSpace(string(out)))
}

func (f *fleet) eventually(cond func() bool, what string) {
	f.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out: %s", what)
		}
		time.Sleep(100 * time.Millisecond) // poll
	}
}

// script is the start script of n's running release root.
func (f *fleet) script(n *fleetNode) script {
	f.t.Helper()
	bins, _ := filepath.Glob(filepath.Join(n.stateDir, "otp", "counter", "*", "bin", "counter"))
	if len(bins) != 1 {
		f.t.Fatalf("node %s: release roots %v, want one", n.name, bins)
	}
	return script{root: filepath.Dir(filepath.Dir(bins[0])), rel: "counter", timeout: time.Minute,
		env: append(f.env, "COUNTER_NODE="+n.nodeName), log: discard}
}

func (f *fleet) pid(n *fleetNode) int {
	f.t.Helper()
	pid, err := f.script(n).pid(context.Background())
	if err != nil {
		f.t.Fatalf("node %s: %v", n.name, err)
	}
	return pid
}

func (f *fleet) eval(n *fleetNode, expr string) string {
	f.t.Helper()
	out, err := f.script(n).eval(context.Background(), expr)
	if err != nil {
		f.t.Fatalf("node %s: eval %s: %v", n.name, expr, err)
	}
	return strings.ReplaceAll(lastLines(out, 1), " ", "")
}

// stop stops every VM and the epmd they shared, after the agents are gone
// (their cleanups run first).
func (f *fleet) stop(epmdPort int) {
	ctx := context.Background()
	for _, n := range f.nodes {
		bins, _ := filepath.Glob(filepath.Join(n.stateDir, "otp", "counter", "*", "bin", "counter"))
		for _, b := range bins {
			s := script{root: filepath.Dir(filepath.Dir(b)), rel: "counter", timeout: time.Minute,
				env: append(f.env, "COUNTER_NODE="+n.nodeName), log: discard}
			if s.alive(ctx) {
				s.run(ctx, "rpc", "init", "stop")
			}
		}
	}
	for _, pid := range processesUnder(f.dir, false) {
		f.t.Errorf("cleanup: process %d still runs from %s; killing it", pid, f.dir)
		_ = syscallKill(pid)
	}
	cmd := exec.Command("epmd", "-kill")
	cmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(epmdPort))
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot connect") {
		f.t.Errorf("cleanup: epmd -kill: %v: %s", err, out)
	}
	for _, pid := range processesUnder(f.dir, true) {
		f.t.Errorf("cleanup: epmd %d still runs; killing it", pid)
		_ = syscallKill(pid)
	}
}

func (f *fleet) cli(args ...string) {
	f.t.Helper()
	cmd := exec.Command(f.bin, args...)
	cmd.Env = f.env
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("reconciler %v: %v\n%s", args, err, out)
	}
}

func (f *fleet) git(dir string, args ...string) {
	f.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, f.env
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}
