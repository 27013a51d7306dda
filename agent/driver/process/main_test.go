package process

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/health"
	"github.com/fleetops/reconciler/release"
)

// releases holds the example workload built once per test binary, by
// version: "1", "2" and "bad" (fails its health check).
var releases = map[string]string{}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() { // every test here runs workload processes: not in the -short tier
		if err := flag.Set("test.skip", "."); err != nil {
			panic(err)
		}
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "process-test-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, v := range []string{"1", "2", "3", "bad"} {
			if err := buildWorkload(dir, v); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// buildWorkload builds examples/workload at version v into dir/v/bin/workload.
func buildWorkload(dir, v string) error {
	flags := "-X main.version=" + v
	if v == "bad" {
		flags += " -X main.broken=true"
	}
	out := filepath.Join(dir, v, "bin", "workload")
	cmd := exec.Command("go", "build", "-ldflags", flags, "-o", out, "../../../examples/workload")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build workload %s: %v\n%s", v, err, b)
	}
	releases[v] = filepath.Join(dir, v)
	return nil
}

// rel is a release of the example workload listening on addr.
func rel(v, addr string) driver.Release {
	return driver.Release{App: "web", Version: v, Dir: releases[v], Manifest: release.Manifest{
		App: "web", Version: v, Command: []string{"bin/workload", "-drain", "5s"},
		Listen:       []release.Listener{{Name: "http", Address: addr}},
		DrainTimeout: "5s",
	}, Env: map[string]string{"RECONCILER_APP": "web", "RECONCILER_VERSION": v}}
}

// newDriver returns a driver whose workloads are all stopped at cleanup.
func newDriver(t testing.TB, onChange func(driver.Running)) *Driver {
	return newDriverWith(t, Options{OnChange: onChange})
}

// newDriverWith is newDriver with more options.
func newDriverWith(t testing.TB, opts Options) *Driver {
	opts.LogDir, opts.RestartDelay = t.TempDir(), 10*time.Millisecond
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAll(t, d) })
	return d
}

func stopAll(t testing.TB, d *Driver) {
	d.mu.Lock()
	var rs []driver.Running
	for _, a := range d.apps {
		rs = append(rs, a.running())
	}
	d.mu.Unlock()
	for _, r := range rs {
		if err := d.Stop(context.Background(), r); err != nil {
			t.Errorf("stop %s: %v", r.App, err)
		}
	}
	d.Close()
}

// addr is the address the current process of r serves on.
func addr(t testing.TB, r driver.Running) string {
	rec, err := decodeRecord(r)
	if err != nil || rec.Current == nil || len(rec.Current.Sockets) == 0 {
		t.Fatalf("no current process with a socket in %+v (%v)", r, err)
	}
	return rec.Current.Sockets[0]
}

// healthy is the check the agent would run for version v.
func healthy(addr, v string) driver.HealthFunc {
	c := health.Check{HTTP: "http://" + addr + "/health", Version: v, Retries: 20, RetryDelay: 20 * time.Millisecond}
	return c.Run
}

// get returns the body of GET / on a fresh connection.
func get(addr string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), err
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

// changes records OnChange calls.
type changes struct {
	mu   sync.Mutex
	last map[string]driver.Running
}

func (c *changes) record(r driver.Running) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]driver.Running{}
	}
	c.last[r.App] = r
}

func (c *changes) get(app string) driver.Running {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[app]
}

func pretty(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
