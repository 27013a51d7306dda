package process

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/fleetops/reconciler/agent/driver"
)

// orphan starts version v in a driver that is then closed, the way an agent
// dies: the workload keeps running. It returns the last recorded Running.
func orphan(t *testing.T, v string) driver.Running {
	var ch changes
	d := newDriver(t, ch.record)
	r, err := d.Switch(context.Background(), nil, rel(v, "127.0.0.1:0"), nil2ok)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	t.Cleanup(func() { killRecorded(r) })
	if got := ch.get("web"); got.Version != v {
		t.Fatalf("recorded %s", pretty(got))
	}
	return ch.get("web")
}

func killRecorded(r driver.Running) {
	for _, pid := range r.PIDs {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

func TestAdoptKeepsLaterSwapsHot(t *testing.T) {
	r := orphan(t, "1")
	a := addr(t, r)
	var ch changes
	d := newDriver(t, ch.record)
	if err := d.Adopt(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if got := ch.get("web"); len(got.PIDs) != 1 || got.PIDs[0] != r.PIDs[0] {
		t.Fatalf("adopted %s, want pid %d", pretty(got), r.PIDs[0])
	}
	if d.app("web").isCold() {
		t.Fatal("adopted without its socket")
	}
	var failed, total atomic.Int64
	stop := load(a, &failed, &total)
	r2, err := d.Switch(context.Background(), &r, rel("2", "127.0.0.1:0"), healthy(a, "2"))
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if addr(t, r2) != a || failed.Load() != 0 || total.Load() == 0 {
		t.Fatalf("swap after adoption: %d of %d requests failed, address %s want %s", failed.Load(), total.Load(), addr(t, r2), a)
	}
	if alive(r.PIDs[0]) {
		t.Fatal("adopted old version still runs after the swap")
	}
}

func TestAdoptUndoesUnconfirmedCandidate(t *testing.T) {
	cur, cand := orphan(t, "1"), orphan(t, "2")
	rc, _ := decodeRecord(cur)
	rn, _ := decodeRecord(cand)
	rec := record{Current: rc.Current, Candidate: rn.Current}
	d := newDriver(t, nil)
	if err := d.Adopt(context.Background(), rec.running("web")); err != nil {
		t.Fatal(err)
	}
	if alive(cand.PIDs[0]) {
		t.Fatal("unconfirmed candidate still runs")
	}
	if !alive(cur.PIDs[0]) {
		t.Fatal("current process was stopped")
	}
	if body, err := get(addr(t, cur)); err != nil || body != "1" {
		t.Fatalf("GET / = %q, %v", body, err)
	}
}

func TestAdoptRestartsDeadWorkload(t *testing.T) {
	r := orphan(t, "1")
	killRecorded(r)
	waitFor(t, "the orphan to exit", func() bool { return !alive(r.PIDs[0]) })
	var ch changes
	d := newDriver(t, ch.record)
	if err := d.Adopt(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	got := ch.get("web")
	if got.Version != "1" || len(got.PIDs) != 1 || got.PIDs[0] == r.PIDs[0] {
		t.Fatalf("after adopting a dead workload: %s", pretty(got))
	}
	if _, err := get(addr(t, got)); err != nil {
		t.Fatal(err)
	}
}

func TestAdoptRejectsReusedPID(t *testing.T) {
	r := orphan(t, "1")
	rec, _ := decodeRecord(r)
	rec.Current.StartTime++ // the same pid, another process
	if rec.Current.alive() {
		t.Fatal("a process with another start time counts as the workload")
	}
	b, _ := json.Marshal(rec)
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
}

// load sends requests to addr on fresh connections until stopped.
func load(a string, failed, total *atomic.Int64) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			if _, err := get(a); err != nil {
				failed.Add(1)
			}
			total.Add(1)
		}
	}()
	return func() { close(quit); <-done }
}

func TestColdAdoptionSwapsStopThenStart(t *testing.T) {
	r := orphan(t, "1")
	a := addr(t, r)
	rec, _ := decodeRecord(r)
	rec.Current.Sockets = []string{"127.0.0.1:1"} // not what it listens on: its socket cannot be found
	var ch changes
	d := newDriver(t, ch.record)
	if err := d.Adopt(context.Background(), rec.running("web")); err != nil {
		t.Fatal(err)
	}
	if !d.app("web").isCold() {
		t.Fatal("adopted hot without its socket")
	}
	next := rel("2", a)
	r2, err := d.Switch(context.Background(), &r, next, healthy(a, "2"))
	if err != nil {
		t.Fatal(err)
	}
	if body, err := get(a); err != nil || body != "2" || alive(r.PIDs[0]) {
		t.Fatalf("after a cold swap: GET %q, %v; old alive %v; running %s", body, err, alive(r.PIDs[0]), pretty(r2))
	}
}
