package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

const within = 30 * time.Second

// fleetCUE is the fleet repo's spec: app web at version on node n1, whose
// PORT comes from the node's declaration.
func fleetCUE(artDir, port, version string) map[string]string {
	return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet

nodes: n1: vars: PORT: %q

apps: web: {
	version: %q
	artifact: url: "file://%s/web-\(version).tar.gz"
	health: {
		http:       "http://127.0.0.1:${PORT}/health"
		retries:    3
		retryDelay: "100ms"
	}
}
`, port, version, artDir)}
}

// node is one agent's world: its repo, state dir, ports and log.
type node struct {
	repo, stateDir, port, healthz string
	log                           *bytes.Buffer
}

func (n *node) start(t *testing.T, extra ...string) *agentProc {
	args := []string{"--repo", n.repo, "--node", "n1", "--state-dir", n.stateDir, "--trust-key", lab.PubKey,
		"--listen", n.healthz, "--poll", "500ms", "--var", "NODE_LABEL=n1", "--log-format", "text"}
	return startAgent(t, n.log, append(args, extra...)...)
}

// push commits web at version on main, as a person would: on top of what
// main holds then, again if the agent's rollback commit landed meanwhile.
func (n *node) push(t *testing.T, version string) {
	t.Helper()
	for try := 0; ; try++ {
		work := gittest.Clone(t, n.repo, "main")
		gittest.Commit(t, work, fleetCUE(lab.Releases, n.port, version), "web "+version)
		out, err := gittest.RunGit(work, "push", "--quiet", "origin", "HEAD:refs/heads/main")
		if err == nil {
			return
		}
		if try == 4 || !strings.Contains(out+err.Error(), "rejected") {
			t.Fatalf("push web %s: %v\n%s", version, err, out)
		}
	}
}

func (n *node) serving() string {
	body, _ := get("http://127.0.0.1:" + n.port + "/")
	return body
}

// app is web's entry in the agent's /healthz ("" state when unavailable).
func (n *node) app() reconciler.AppReport {
	body, err := get("http://" + n.healthz + "/healthz")
	if err != nil {
		return reconciler.AppReport{}
	}
	var h agent.Healthz
	if json.Unmarshal([]byte(body), &h) != nil {
		return reconciler.AppReport{}
	}
	return h.Report.Apps["web"]
}

func TestAgentEndToEnd(t *testing.T) {
	n := &node{stateDir: t.TempDir(), port: freePort(t), healthz: "127.0.0.1:" + freePort(t), log: &bytes.Buffer{}}
	n.repo = gittest.NewBare(t, fleetCUE(lab.Releases, n.port, "1.0.0"))
	t.Cleanup(func() {
		_ = fleetlab.KillWorkloads(n.stateDir)
		if t.Failed() {
			t.Logf("agent log:\n%s", n.log)
			b, _ := os.ReadFile(filepath.Join(n.stateDir, "logs", "web.log"))
			t.Logf("workload log:\n%s", b)
		}
	})

	start := time.Now()
	phase := func(name string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), name) }
	ag := n.start(t)
	gittest.Eventually(t, within, func() bool { return n.serving() == "1.0.0" }, "first install serving 1.0.0")
	phase("1.0.0 installed and serving")

	// A pushed version bump is installed and serving, with no failed request.
	l := startLoad("http://127.0.0.1:" + n.port + "/")
	n.push(t, "1.1.0")
	gittest.Eventually(t, within, func() bool { return n.app().Version == "1.1.0" && n.app().State == reconciler.AppHealthy },
		"1.1.0 healthy in /healthz")
	l.stop()
	if l.failed != 0 || n.serving() != "1.1.0" {
		t.Fatalf("upgrade to 1.1.0: %d of %d requests failed (first: %v); serving %q", l.failed, l.total, l.firstErr, n.serving())
	}
	phase(fmt.Sprintf("upgrade 1.0.0 → 1.1.0: 0 of %d requests failed", l.total))

	// A broken version is rolled back locally and reported.
	l = startLoad("http://127.0.0.1:" + n.port + "/")
	n.push(t, "1.2.0-broken")
	gittest.Eventually(t, within, func() bool { return n.app().State == reconciler.AppFailed }, "1.2.0-broken reported failed")
	l.stop()
	rep := n.app()
	if rep.Version != "1.1.0" || rep.Target != "1.2.0-broken" || !strings.Contains(rep.Error, "not healthy") {
		t.Fatalf("report after the broken version: %+v", rep)
	}
	if l.failed != 0 || n.serving() != "1.1.0" {
		t.Fatalf("during the failed upgrade: %d of %d requests failed (first: %v); serving %q", l.failed, l.total, l.firstErr, n.serving())
	}
	checkSharedReport(t, n.repo, "1.1.0", reconciler.AppFailed)
	phase("1.2.0-broken rolled back and reported")
	checkMetrics(t, n.healthz) // an upgrade and a local rollback are counted by now

	// Killing the agent leaves the workload serving.
	pid := workloadPID(t, n.stateDir, "web")
	ag.signal(syscall.SIGKILL)
	ag.wait(t)
	for range 20 {
		if got := n.serving(); got != "1.1.0" {
			t.Fatalf("after SIGKILL of the agent: serving %q", got)
		}
	}

	// A restarted agent adopts it (same pid), and a later upgrade is still hot.
	ag = n.start(t)
	gittest.Eventually(t, within, func() bool { return n.app().Version == "1.1.0" }, "restarted agent reports 1.1.0")
	if got := workloadPID(t, n.stateDir, "web"); got != pid {
		t.Fatalf("workload pid %d after the agent restart, want %d (adopted, not restarted)", got, pid)
	}
	phase("agent restarted, workload adopted")
	l = startLoad("http://127.0.0.1:" + n.port + "/")
	n.push(t, "1.3.0")
	gittest.Eventually(t, within, func() bool { return n.app().Version == "1.3.0" && n.app().State == reconciler.AppHealthy },
		"1.3.0 healthy after adoption")
	l.stop()
	if l.failed != 0 {
		t.Fatalf("upgrade after adoption: %d of %d requests failed (first: %v)", l.failed, l.total, l.firstErr)
	}
	phase(fmt.Sprintf("upgrade 1.1.0 → 1.3.0 after adoption: 0 of %d requests failed", l.total))
	if alive(pid) {
		t.Fatalf("adopted 1.1.0 (pid %d) still runs after the upgrade", pid)
	}

	// SIGTERM stops the agent cleanly; the workload stays up.
	ag.signal(syscall.SIGTERM)
	if code := ag.wait(t); code != 0 {
		t.Fatalf("agent exit code %d after SIGTERM, want 0", code)
	}
	if got := n.serving(); got != "1.3.0" {
		t.Fatalf("after SIGTERM of the agent: serving %q", got)
	}

	phase("agent stopped by SIGTERM, workload serving")
	// --once on a converged node exits 0.
	if code := n.start(t, "--once", "--listen", "").wait(t); code != 0 {
		t.Fatalf("agent --once on a converged node: exit %d", code)
	}
	phase("agent --once: converged")
}

// checkSharedReport reads n1's report from the fleet repo's shared state.
func checkSharedReport(t *testing.T, repo, version, stateName string) {
	sh, err := fleetrepo.OpenShared(context.Background(), fleetrepo.SharedOptions{URL: repo})
	if err != nil {
		t.Fatal(err)
	}
	gittest.Eventually(t, within, func() bool {
		reps, err := sh.Reports(context.Background())
		a := reps["n1"].Apps["web"]
		return err == nil && a.Version == version && a.State == stateName
	}, "node report in the fleet repo says web "+version+" "+stateName)
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}
