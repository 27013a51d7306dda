package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The real binary writes start, ready, stop and exit, in that order, and
// waits -start-delay before serving.
func TestEventLog(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the workload")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "workload")
	if b, err := exec.Command("go", "build", "-ldflags", "-X main.version=9.9.9", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	events := filepath.Join(dir, "events")
	cmd := exec.Command(bin, "-listen", addr, "-start-delay", "500ms")
	cmd.Env = append(os.Environ(), "WORKLOAD_EVENTS="+events)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(started) > 20*time.Second {
			t.Fatalf("never served: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(started); el < 500*time.Millisecond {
		t.Fatalf("served after %s, before -start-delay 500ms", el)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(events)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var last int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if e.PID != cmd.Process.Pid || e.Version != "9.9.9" || e.Mono < last {
			t.Fatalf("event %+v: want pid %d, version 9.9.9, mono rising", e, cmd.Process.Pid)
		}
		last = e.Mono
		names = append(names, e.Event)
	}
	if want := []string{"start", "ready", "stop", "exit"}; len(names) != 4 || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] || names[3] != want[3] {
		t.Fatalf("events = %v, want %v", names, want)
	}
}
