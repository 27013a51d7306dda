package e2e

import (
	"bytes"
	"strings"
	"syscall"
	"testing"

	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// An agent killed in the middle of a switch leaves a candidate whose health
// was never confirmed; the restarted agent stops it, keeps the old version
// and converges again.
func TestAgentKilledMidSwitch(t *testing.T) {
	n := &node{stateDir: t.TempDir(), port: freePort(t), healthz: "127.0.0.1:" + freePort(t), log: &bytes.Buffer{}}
	n.repo = gittest.NewBare(t, fleetCUE(lab.Releases, n.port, "1.1.0"))
	t.Cleanup(func() {
		_ = fleetlab.KillWorkloads(n.stateDir)
		if t.Failed() {
			t.Logf("agent log:\n%s", n.log)
		}
	})
	ag := n.start(t)
	gittest.Eventually(t, within, func() bool { return n.app().State == reconciler.AppHealthy }, "1.1.0 healthy")
	old := workloadPID(t, n.stateDir, "web")

	// A broken version whose health check keeps the switch going for ~3s.
	slow := fleetCUE(lab.Releases, n.port, "1.2.0-broken")
	slow["fleet.cue"] = strings.Replace(slow["fleet.cue"], "retries:    3", "retries:    30", 1)
	gittest.PushFiles(t, n.repo, "main", slow, "web 1.2.0-broken")
	var cand int
	gittest.Eventually(t, within, func() bool {
		st, err := state.Open(n.stateDir)
		a := st.App("web")
		if err != nil || a.Step == nil || a.Running == nil || len(a.Running.PIDs) != 2 {
			return false
		}
		cand = a.Running.PIDs[1]
		return true
	}, "a switch in progress with its candidate")
	ag.signal(syscall.SIGKILL)
	ag.wait(t)
	if !alive(cand) || !alive(old) {
		t.Fatalf("after SIGKILL mid-switch: old alive %v, candidate alive %v", alive(old), alive(cand))
	}

	n.start(t)
	gittest.Eventually(t, within, func() bool { return !alive(cand) }, "the unconfirmed candidate stopped")
	gittest.Eventually(t, within, func() bool {
		a := n.app()
		return a.State == reconciler.AppFailed && a.Target == "1.2.0-broken"
	}, "the broken version tried again and reported failed")
	if a := n.app(); a.Version != "1.1.0" || workloadPID(t, n.stateDir, "web") != old || n.serving() != "1.1.0" {
		t.Fatalf("after recovery: report %+v, pid %d (old %d), serving %q", a, workloadPID(t, n.stateDir, "web"), old, n.serving())
	}
}
