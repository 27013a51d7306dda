package process

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
)

// An agent killed after forking a new version and before recording its pid
// left that process running unknown beside the adopted one (chaos seed 3:
// node-4 ran two 1.1.0 workloads after a kill -9 mid-switch). The start is
// recorded, with its instance token, before the fork; Adopt stops what
// carries the token.

// unrecorded starts a process the way a killed agent's fork leaves it: its
// own session, the instance token in its environment, no pid recorded.
func unrecorded(t *testing.T, token string) *exec.Cmd {
	cmd := exec.Command("sleep", "300")
	cmd.Env = append(os.Environ(), instanceVar+"="+token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return cmd
}

func TestAdoptStopsAnUnrecordedStart(t *testing.T) {
	cur := orphan(t, "1")
	rc, _ := decodeRecord(cur)
	for _, tc := range []struct {
		name    string
		current *procRecord
	}{
		{"beside the current version", rc.Current},
		{"on a first install", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, err := newInstance()
			if err != nil {
				t.Fatal(err)
			}
			left := unrecorded(t, token)
			rec := record{Current: tc.current, Starting: &procRecord{Instance: token, Release: rel("2", "127.0.0.1:0")}}
			var ch changes
			d := newDriver(t, ch.record)
			if err := d.Adopt(context.Background(), rec.running("web")); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for stillRuns(left.Process.Pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if stillRuns(left.Process.Pid) {
				t.Fatalf("the unrecorded start (pid %d, token %s) still runs after Adopt", left.Process.Pid, token)
			}
			got := ch.get("web")
			if strings.Contains(string(got.Data), token) {
				t.Fatalf("the pending start is still recorded after Adopt: %s", pretty(got))
			}
			if tc.current != nil && (!alive(cur.PIDs[0]) || len(got.PIDs) != 1 || got.PIDs[0] != cur.PIDs[0]) {
				t.Fatalf("current process %d: alive %v, recorded %s", cur.PIDs[0], alive(cur.PIDs[0]), pretty(got))
			}
			if tc.current == nil && (got.Version != "" || len(got.PIDs) != 0 || len(got.Data) != 0) {
				t.Fatalf("first install: recorded %s, want nothing", pretty(got))
			}
		})
	}
}

// stillRuns reports whether pid runs and is not a zombie.
func stillRuns(pid int) bool {
	_, state, err := procStat(pid)
	return err == nil && state != "Z"
}

// TestStartIsRecordedBeforeTheFork: the record a switch reports before its
// process exists names the start's token, and the process then started
// carries that token.
func TestStartIsRecordedBeforeTheFork(t *testing.T) {
	var mu sync.Mutex
	var pending []string
	d := newDriver(t, func(r driver.Running) {
		rec, err := decodeRecord(r)
		if err == nil && rec.Starting != nil {
			mu.Lock()
			pending = append(pending, rec.Starting.Instance)
			mu.Unlock()
			if rec.Candidate != nil || rec.Starting.PID != 0 {
				t.Errorf("a pending start with a pid or beside its candidate: %s", pretty(r))
			}
		}
	})
	r, err := d.Switch(context.Background(), nil, rel("1", "127.0.0.1:0"), nil2ok)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := decodeRecord(r)
	mu.Lock()
	defer mu.Unlock()
	if got.Starting != nil || got.Current == nil || !slices.Contains(pending, got.Current.Instance) {
		t.Fatalf("pending starts %v, record after the switch %s: want the started token recorded before", pending, pretty(r))
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(got.Current.PID) + "/environ")
	if err != nil || !strings.Contains(string(env), instanceVar+"="+got.Current.Instance) {
		t.Fatalf("environment of pid %d (%v) lacks its token", got.Current.PID, err)
	}
}
