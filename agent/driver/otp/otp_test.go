package otp

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
)

// TestHotUpgradeAndRollback runs the counter fixture on a real BEAM node:
// 1.0.0 → 1.1.0 by relup (same OS pid; the counter keeps its value and its
// state record gains the step field), then the broken 1.2.0 (it fails its
// health check) goes back to 1.1.0 inside the same VM, then a rollback
// commit's switch to 1.0.0 downgrades by relup too.
func TestHotUpgradeAndRollback(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()

	r1, err := n.drv.Switch(ctx, nil, n.release("1.0.0"), n.healthy("1.0.0"))
	if err != nil {
		t.Fatalf("install 1.0.0: %v", err)
	}
	pid := onePID(t, r1)
	for range 3 {
		n.eval("counter_server:incr().")
	}
	if got := n.eval("sys:get_state(counter_server)."); got != "{state,3}" {
		t.Fatalf("1.0.0 state = %s, want {state,3}", got)
	}

	next := n.release("1.1.0")
	start := time.Now()
	r2, err := n.drv.Switch(ctx, &r1, next, n.healthy("1.1.0"))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("upgrade to 1.1.0: %v", err)
	}
	state := n.eval("sys:get_state(counter_server).")
	t.Logf("hot upgrade 1.0.0 -> 1.1.0: %v from Switch to healthy and permanent; OS pid %d before, %d after; state {state,3} -> %s",
		took.Round(time.Millisecond), pid, onePID(t, r2), state)
	if onePID(t, r2) != pid {
		t.Errorf("pid after the upgrade = %d, want %d (no restart)", onePID(t, r2), pid)
	}
	if state != "{state,3,1}" {
		t.Errorf("1.1.0 state = %s, want {state,3,1}: count kept, step added", state)
	}
	if d, _ := DataOf(r2); d.Switch != SwitchRelup || r2.Version != "1.1.0" {
		t.Errorf("running = %s by %q, want 1.1.0 by relup", r2.Version, d.Switch)
	}
	if got := n.eval("counter_server:incr()."); got != "4" {
		t.Errorf("incr on 1.1.0 = %s, want 4", got)
	}
	wantReleases(t, n, r2, []ReleaseState{{Version: "1.1.0", Status: "permanent"}, {Version: "1.0.0", Status: "old"}})

	r3, err := n.drv.Switch(ctx, &r2, n.release("1.2.0"), n.healthy("1.2.0"))
	if err == nil {
		t.Fatal("switch to the broken 1.2.0 succeeded")
	}
	t.Logf("broken 1.2.0: %v", err)
	if r3.Version != "1.1.0" || onePID(t, r3) != pid {
		t.Errorf("after the failed switch: %s pid %v, want 1.1.0 pid %d", r3.Version, r3.PIDs, pid)
	}
	if got := n.eval("sys:get_state(counter_server)."); got != "{state,4,1}" {
		t.Errorf("state after the rollback = %s, want {state,4,1}", got)
	}
	if err := n.healthy(r3.Version)(ctx); err != nil {
		t.Errorf("1.1.0 after the rollback: %v", err)
	}
	wantReleases(t, n, r3, []ReleaseState{{Version: "1.1.0", Status: "permanent"}, {Version: "1.0.0", Status: "old"}})

	r4, err := n.drv.Switch(ctx, &r3, n.release("1.0.0"), n.healthy("1.0.0"))
	if err != nil {
		t.Fatalf("downgrade to 1.0.0: %v", err)
	}
	if onePID(t, r4) != pid {
		t.Errorf("pid after the downgrade = %d, want %d", onePID(t, r4), pid)
	}
	if got := n.eval("sys:get_state(counter_server)."); got != "{state,4}" {
		t.Errorf("state after the downgrade = %s, want {state,4}", got)
	}
	wantReleases(t, n, r4, []ReleaseState{{Version: "1.0.0", Status: "permanent"}, {Version: "1.1.0", Status: "old"}})
}

// TestRestartWithoutRelup: no relup leads from 1.0.0 to 1.2.0, so the VM is
// restarted on it; when 1.2.0 is then unhealthy, 1.0.0 is started again.
func TestRestartWithoutRelup(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()

	r1, err := n.drv.Switch(ctx, nil, n.release("1.0.0"), n.healthy("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := DataOf(r1)

	r2, err := n.drv.Switch(ctx, &r1, n.release("1.2.0"), n.healthy("1.2.0"))
	if err == nil {
		t.Fatal("switch to the broken 1.2.0 succeeded")
	}
	t.Logf("1.0.0 -> 1.2.0 without relup, unhealthy: %v", err)
	if r2.Version != "1.0.0" || onePID(t, r2) == onePID(t, r1) || pidAlive(onePID(t, r1)) {
		t.Errorf("after the failed switch: %s pid %v, want 1.0.0 in a new VM (old pid %d)", r2.Version, r2.PIDs, onePID(t, r1))
	}
	if err := n.healthy(r2.Version)(ctx); err != nil {
		t.Errorf("1.0.0 after the rollback: %v", err)
	}
	if roots, _ := filepath.Glob(filepath.Join(n.dir, "counter", "*")); len(roots) != 1 || roots[0] != d1.Root {
		t.Errorf("release roots = %v, want only %s", roots, d1.Root)
	}

	// Healthy enough when only asked whether the node answers.
	r3, err := n.drv.Switch(ctx, &r2, n.release("1.2.0"), n.alive)
	if err != nil {
		t.Fatalf("switch to 1.2.0 by restart: %v", err)
	}
	d3, _ := DataOf(r3)
	if d3.Switch != SwitchRestart || onePID(t, r3) == onePID(t, r2) {
		t.Errorf("1.2.0 by %q pid %v, want by restart in a new VM", d3.Switch, r3.PIDs)
	}
	if _, err := os.Stat(d1.Root); !os.IsNotExist(err) {
		t.Errorf("the old root %s is still there (%v)", d1.Root, err)
	}
	wantReleases(t, n, r3, []ReleaseState{{Version: "1.2.0", Status: "permanent"}})
}

// TestRelupCrash: 1.3.0's code_change/3 crashes during the relup;
// release_handler restarts the node's applications on the permanent 1.1.0
// in the same OS process (the counter starts again from zero), and the
// driver reports the failure with 1.1.0 running.
func TestRelupCrash(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()
	r1, err := n.drv.Switch(ctx, nil, n.release("1.1.0"), n.healthy("1.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	n.eval("counter_server:incr().")
	r2, err := n.drv.Switch(ctx, &r1, n.release("1.3.0"), n.healthy("1.3.0"))
	if err == nil || !strings.Contains(err.Error(), "code_change_failed") {
		t.Fatalf("switch to 1.3.0: err = %v, want code_change_failed", err)
	}
	t.Logf("1.3.0, relup crashes: %v", err)
	if r2.Version != "1.1.0" || onePID(t, r2) != onePID(t, r1) {
		t.Errorf("after the failed switch: %s pid %v, want 1.1.0 pid %d", r2.Version, r2.PIDs, onePID(t, r1))
	}
	if got := n.eval("sys:get_state(counter_server)."); got != "{state,0,1}" {
		t.Errorf("state = %s, want {state,0,1} (applications restarted)", got)
	}
	if err := n.healthy(r2.Version)(ctx); err != nil {
		t.Errorf("1.1.0 after the failed relup: %v", err)
	}
	wantReleases(t, n, r2, []ReleaseState{{Version: "1.1.0", Status: "permanent"}})
}

// TestFirstInstallUnhealthy: an unhealthy first install leaves nothing.
func TestFirstInstallUnhealthy(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	_, err := n.drv.Switch(context.Background(), nil, n.release("1.2.0"), n.healthy("1.2.0"))
	if err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Fatalf("install of the broken 1.2.0: err = %v, want not healthy", err)
	}
	if roots, _ := filepath.Glob(filepath.Join(n.dir, "counter", "*")); len(roots) != 0 {
		t.Errorf("release roots left: %v", roots)
	}
	if pids := scanProcesses(n.dir, false); len(pids) != 0 {
		t.Errorf("processes left: %v", pids)
	}
}

// TestAdoptAndStop: a new driver (a restarted agent) adopts the VM; Stop
// stops it; Adopt starts it again on its permanent release.
func TestAdoptAndStop(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()
	r, err := n.drv.Switch(ctx, nil, n.release("1.0.0"), n.healthy("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := New(Options{Dir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Adopt(ctx, r); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if err := again.Stop(ctx, r); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if pidAlive(onePID(t, r)) {
		t.Fatalf("pid %d alive after Stop", onePID(t, r))
	}
	if err := again.Stop(ctx, r); err != nil {
		t.Errorf("stop a stopped VM: %v", err)
	}
	if err := again.Adopt(ctx, r); err != nil {
		t.Fatalf("adopt a stopped VM: %v", err)
	}
	if err := n.healthy(r.Version)(ctx); err != nil {
		t.Errorf("after adopt: %v", err)
	}
	other := r
	other.Version = "1.1.0"
	if err := again.Adopt(ctx, other); err == nil {
		t.Error("adopt of a version the VM does not run succeeded")
	}
}

// TestAdoptInterruptedSwitch: the agent died after `upgrade --no-permanent`
// and before the health check; the restarted agent adopts the VM on the
// version it recorded, which takes the VM back by relup.
func TestAdoptInterruptedSwitch(t *testing.T) {
	t.Parallel()
	n := newNode(t)
	ctx := context.Background()
	r, err := n.drv.Switch(ctx, nil, n.release("1.0.0"), n.healthy("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	n.eval("counter_server:incr().")
	n.eval("counter_server:incr().")
	d, _ := DataOf(r)
	s := n.drv.script(d)
	next := n.release("1.1.0")
	if _, err := n.drv.unpack(ctx, s, "1.1.0", filepath.Join(next.Dir, "counter-1.1.0.tar.gz")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.run(ctx, "upgrade", "1.1.0", "--no-permanent"); err != nil {
		t.Fatal(err)
	}
	wantReleases(t, n, r, []ReleaseState{{Version: "1.1.0", Status: "current"}, {Version: "1.0.0", Status: "permanent"}})

	again, err := New(Options{Dir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Adopt(ctx, r); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	wantReleases(t, n, r, []ReleaseState{{Version: "1.0.0", Status: "permanent"}})
	if pid, err := s.pid(ctx); err != nil || pid != onePID(t, r) {
		t.Errorf("pid after adopt = %d, %v; want %d", pid, err, onePID(t, r))
	}
	if got := n.eval("sys:get_state(counter_server)."); got != "{state,2}" {
		t.Errorf("state after adopt = %s, want {state,2}", got)
	}
}

func onePID(t *testing.T, r driver.Running) int {
	t.Helper()
	if len(r.PIDs) != 1 {
		t.Fatalf("%s %s: pids %v, want one", r.App, r.Version, r.PIDs)
	}
	return r.PIDs[0]
}

func wantReleases(t *testing.T, n *node, r driver.Running, want []ReleaseState) {
	t.Helper()
	got, err := n.drv.Releases(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("releases = %v, want %v", got, want)
	}
}
