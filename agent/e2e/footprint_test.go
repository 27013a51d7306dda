package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
)

// BenchmarkAgentFootprint runs a real agent managing three apps and, once
// they are converged, measures its resident memory and CPU use while idle
// (default --poll 30s, watching a local fleet repo). Run it with
//
//	go test -run '^$' -bench AgentFootprint -benchtime 1x ./agent/e2e/
//
// FOOTPRINT_IDLE sets the idle window (default 30s).
func BenchmarkAgentFootprint(b *testing.B) {
	idle := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("FOOTPRINT_IDLE")); err == nil {
		idle = d
	}
	apps := []string{"svc_a", "svc_b", "svc_c"}
	files, vars := map[string]string{}, ""
	cue := "package fleet\n\n"
	for _, app := range apps {
		if _, err := lab.ReleaseAs(app, "1.0.0", "PORT_"+app); err != nil {
			b.Fatal(err)
		}
		port := freePort(b)
		vars += fmt.Sprintf("nodes: n1: vars: PORT_%s: %q\n", app, port)
		cue += fmt.Sprintf(`apps: %s: {
	version: "1.0.0"
	artifact: url: "file://%s/%s-\(version).tar.gz"
	health: http: "http://127.0.0.1:%s/health"
}
`, app, lab.Releases, app, port)
	}
	files["fleet.cue"] = cue + vars
	stateDir := b.TempDir()
	repo := gittest.NewBare(b, files)
	healthz := "127.0.0.1:" + freePort(b)
	var log bytes.Buffer
	b.Cleanup(func() {
		_ = fleetlab.KillWorkloads(stateDir)
		if b.Failed() {
			b.Logf("agent log:\n%s", log.String())
		}
	})
	ag := startAgent(b, &log, "--repo", repo, "--node", "n1", "--state-dir", stateDir, "--trust-key", lab.PubKey,
		"--listen", healthz, "--log-format", "json", "--var", "NODE_LABEL=n1")
	gittest.Eventually(b, within, func() bool {
		for _, app := range apps {
			if workloadPID(b, stateDir, app) == 0 {
				return false
			}
		}
		return true
	}, "three apps running")
	n := &node{healthz: healthz}
	gittest.Eventually(b, within, func() bool {
		for _, app := range apps {
			if n.reportApp(app).State != "healthy" {
				return false
			}
		}
		return true
	}, "three apps healthy")
	time.Sleep(5 * time.Second) // let the first pass's report be written: measure the idle agent
	pid := ag.cmd.Process.Pid
	for b.Loop() {
		cpu0, t0 := cpuTicks(b, pid), time.Now()
		time.Sleep(idle) // the measurement window: the agent idles meanwhile
		cpu1, t1 := cpuTicks(b, pid), time.Now()
		pct := 100 * float64(cpu1-cpu0) / 100 / t1.Sub(t0).Seconds() // USER_HZ is 100 on Linux
		b.ReportMetric(float64(rssKB(b, pid))/1024, "RSS-MB")
		b.ReportMetric(pct, "idle-CPU-%")
	}
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s)[strings.LastIndexByte(string(s), ')')+1:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// rssKB is VmRSS of pid.
func rssKB(b *testing.B, pid int) int64 {
	s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
