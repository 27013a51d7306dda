package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// TestTwoAgentsWithOneNodeNameStop: two agents run with node name n1 on
// one fleet repo (their report chain moves under each other). Both find
// out within two passes each, refuse to act (a new version is not
// switched to), and say so: an ERROR line, the report's conflict, a
// degraded /healthz. Before, both acted; the first logged a CAS mismatch.
func TestTwoAgentsWithOneNodeNameStop(t *testing.T) {
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	var logs [2]*syncBuffer
	var agents [2]*Agent
	var drivers [2]*fakeDriver
	for i := range agents {
		desired, err := fleetrepo.OpenDesired(context.Background(), fleetrepo.DesiredOptions{URL: repo})
		must(t, err)
		shared, err := fleetrepo.OpenShared(context.Background(), fleetrepo.SharedOptions{URL: repo, Identity: fleetrepo.Identity{Name: "n1"}})
		must(t, err)
		logs[i], drivers[i] = &syncBuffer{}, &fakeDriver{fail: map[string]bool{}}
		agents[i], err = New(Config{Node: "n1", StateDir: t.TempDir(), Desired: desired, Installer: &fakeInstaller{},
			Reporter: shared, Drivers: map[string]driver.Driver{"process": drivers[i]}, Logger: slog.New(slog.NewTextHandler(logs[i], nil))})
		must(t, err)
	}
	ctx := context.Background()
	for range 3 {
		for _, a := range agents {
			a.Reconcile(ctx)
		}
	}
	gittest.PushFiles(t, repo, "main", specFiles("web@2.0.0"), "web 2.0.0")
	for _, a := range agents {
		a.Reconcile(ctx)
	}
	for i, a := range agents {
		hz := a.Health()
		if a.duplicate() == "" || hz.Status != HealthDegraded || !strings.Contains(hz.Report.Conflict, "two agents share the node name n1") {
			t.Errorf("agent %d: status %s, conflict %q", i, hz.Status, hz.Report.Conflict)
		}
		if !strings.Contains(logs[i].String(), "refusing to act: another agent uses this node name") {
			t.Errorf("agent %d logged no ERROR:\n%s", i, logs[i])
		}
		drivers[i].mu.Lock()
		for _, v := range drivers[i].switches {
			if v == "2.0.0" {
				t.Errorf("agent %d switched to 2.0.0 while another agent has its name", i)
			}
		}
		drivers[i].mu.Unlock()
	}
}

// dupAgent is an agent named n1 on repo with its own state and driver,
// reporting as instance.
func dupAgent(t *testing.T, repo, instance, stateDir string) (*Agent, *fakeDriver) {
	t.Helper()
	desired, err := fleetrepo.OpenDesired(context.Background(), fleetrepo.DesiredOptions{URL: repo})
	must(t, err)
	shared, err := fleetrepo.OpenShared(context.Background(), fleetrepo.SharedOptions{URL: repo,
		Identity: fleetrepo.Identity{Name: "n1"}, Instance: instance})
	must(t, err)
	drv := &fakeDriver{fail: map[string]bool{}}
	a, err := New(Config{Node: "n1", StateDir: stateDir, Desired: desired, Installer: &fakeInstaller{},
		Reporter: shared, Drivers: map[string]driver.Driver{"process": drv}, Logger: slog.New(slog.DiscardHandler)})
	must(t, err)
	return a, drv
}

// Issue 11 item 6, the rest: the agent that starts second, beside a live
// agent with its node name, installs and switches nothing, not even in its
// first pass (it used to start a workload before its first report write
// let the two find each other). The same instance after a restart is not
// another agent.
func TestSecondAgentWithTheNameActsOnNothing(t *testing.T) {
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	ctx := context.Background()
	dirA := t.TempDir()
	a, _ := dupAgent(t, repo, "instance-a", dirA)
	if !a.Reconcile(ctx) {
		t.Fatal("the first agent did not converge")
	}
	b, drvB := dupAgent(t, repo, "instance-b", t.TempDir())
	b.Reconcile(ctx)
	if len(drvB.switches) != 0 || b.duplicate() == "" {
		t.Fatalf("second agent with the name n1: switches %v, conflict %q; want none and a conflict", drvB.switches, b.duplicate())
	}
	a.Reconcile(ctx)
	if a.duplicate() == "" {
		t.Fatal("the first agent did not find out about the second")
	}
}

// A restarted agent with its instance finds its own last report, fresh,
// and acts at once.
func TestRestartedAgentIsNotItsOwnDuplicate(t *testing.T) {
	repo := gittest.NewBare(t, specFiles("web@1.0.0"))
	ctx := context.Background()
	dir := t.TempDir()
	a, _ := dupAgent(t, repo, "instance-a", dir)
	if !a.Reconcile(ctx) {
		t.Fatal("first start did not converge")
	}
	gittest.PushFiles(t, repo, "main", specFiles("web@2.0.0"), "web 2.0.0")
	a2, drv := dupAgent(t, repo, "instance-a", dir)
	if !a2.Reconcile(ctx) || a2.duplicate() != "" || len(drv.switches) != 1 || drv.switches[0] != "2.0.0" {
		t.Fatalf("restarted agent: conflict %q, switches %v; want 2.0.0 at once", a2.duplicate(), drv.switches)
	}
}
