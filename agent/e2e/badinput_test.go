package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"syscall"
	"testing"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// report is the agent's whole report from /healthz (zero when unavailable).
func (n *node) report() reconciler.NodeReport {
	body, err := get("http://" + n.healthz + "/healthz")
	if err != nil {
		return reconciler.NodeReport{}
	}
	var h agent.Healthz
	_ = json.Unmarshal([]byte(body), &h)
	return h.Report
}

// reportApp is one app's entry in the agent's /healthz report.
func (n *node) reportApp(app string) reconciler.AppReport { return n.report().Apps[app] }

// An invalid spec and an unverifiable release change nothing: the node
// keeps serving what it ran and reports why.
func TestAgentKeepsServingOnBadInput(t *testing.T) {
	n := &node{stateDir: t.TempDir(), port: freePort(t), healthz: "127.0.0.1:" + freePort(t), log: &bytes.Buffer{}}
	n.repo = gittest.NewBare(t, fleetCUE(lab.Releases, n.port, "1.0.0"))
	t.Cleanup(func() {
		_ = fleetlab.KillWorkloads(n.stateDir)
		if t.Failed() {
			t.Logf("agent log:\n%s", n.log)
		}
	})
	ag := n.start(t)
	gittest.Eventually(t, within, func() bool { return n.app().State == reconciler.AppHealthy }, "1.0.0 healthy")

	gittest.PushFiles(t, n.repo, "main", map[string]string{"fleet.cue": "package fleet\n\napps: web: version: 1\n"}, "typo")
	gittest.Eventually(t, within, func() bool { return n.report().SpecError != "" }, "spec error reported")
	if r := n.report(); !strings.Contains(r.SpecError, "fleet.cue") || r.Apps["web"].Version != "1.0.0" {
		t.Fatalf("report with an invalid spec: %+v", r)
	}

	pinned := fleetCUE(lab.Releases, n.port, "1.1.0")
	pinned["fleet.cue"] += "apps: web: artifact: sha256: \"" + strings.Repeat("0", 64) + "\"\n"
	gittest.PushFiles(t, n.repo, "main", pinned, "web 1.1.0 with a wrong pin")
	gittest.Eventually(t, within, func() bool {
		a := n.app()
		return a.State == reconciler.AppFailed && a.Target == "1.1.0"
	}, "unverifiable release reported failed")
	if a := n.app(); a.Version != "1.0.0" || n.serving() != "1.0.0" || !strings.Contains(a.Error, "sha256") {
		t.Fatalf("after an unverifiable release: report %+v, serving %q", a, n.serving())
	}

	ag.signal(syscall.SIGTERM)
	if code := ag.wait(t); code != 0 {
		t.Fatalf("agent exit %d after SIGTERM", code)
	}
	if code := n.start(t, "--once", "--listen", "").wait(t); code != 1 {
		t.Fatalf("agent --once on a node that cannot converge: exit %d, want 1", code)
	}
	if got := n.serving(); got != "1.0.0" {
		t.Fatalf("serving %q after --once, want 1.0.0", got)
	}
}
