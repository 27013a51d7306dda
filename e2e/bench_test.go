package e2e

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// BenchmarkRollout measures a rolling upgrade of 5 real agents, batch size
// 2 (three waves), over a local bare repo, over git http-backend, and over
// git http-backend with the shared state in an embedded etcd:
//
//   - push-to-first-switch: from the push to the first node starting its switch;
//   - rollout: from the push to every node serving the new version;
//   - overhead/wave: (rollout - the sum over waves of the slowest node's
//     install+switch+health time) / waves: what coordination costs.
//
// Run: go test -run '^$' -bench BenchmarkRollout -benchtime 3x ./e2e/
func BenchmarkRollout(b *testing.B) {
	for _, transport := range []string{"local", "http", "etcd"} {
		b.Run(transport, func(b *testing.B) {
			var f *fleet
			if transport == "etcd" {
				f = newEtcdFleet(b, 5, "--poll", "30s")
			} else {
				f = newFleet(b, 5, "--poll", "30s") // the agent's default
			}
			if transport == "local" {
				for _, a := range f.agents { // restart them on the path instead of the URL
					a.Kill()
				}
				f = relaunch(b, f, f.bare)
			}
			versions := []string{"1.1.0", "1.0.0"}
			var first, total, overhead time.Duration
			for i := 0; i < b.N; i++ {
				v := versions[i%2]
				f.settle() // idle agents, as before a real push
				pushed := time.Now()
				f.push(specOptions{version: v, rollout: `strategy: "rolling", batchSize: 2`}, "web "+v)
				f.waitAll(v, 2*time.Minute)
				took := time.Since(pushed)
				sw, work := switchTimes(b, f, v, pushed)
				first += sw
				total += took
				overhead += (took - work) / 3
			}
			n := time.Duration(b.N)
			b.ReportMetric(float64((first / n).Milliseconds()), "ms-push-to-first-switch")
			b.ReportMetric(float64((total / n).Milliseconds()), "ms-rollout")
			b.ReportMetric(float64((overhead / n).Milliseconds()), "ms-overhead/wave")
		})
	}
}

// settle waits for the latest rollout to end and the agents to go idle
// (nodes in a rollout look at the shared state every 2 s; idle ones do not).
func (f *fleet) settle() {
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r == nil || r.Ended(), "rollout in progress"
	}, "the rollout to end")
	time.Sleep(3 * time.Second)
}

// relaunch starts a fresh set of agents on repo (same bare repository).
func relaunch(b *testing.B, f *fleet, repo string) *fleet {
	g := &fleet{t: b, bare: f.bare, url: f.url, lab: lab.Fleet(b.TempDir()), nodes: f.nodes}
	b.Cleanup(func() { _ = g.lab.Close() })
	for _, name := range g.nodes {
		a, err := g.lab.StartAgent(name, repo, "--poll", "30s", "--lease-ttl", "3s")
		if err != nil {
			b.Fatal(err)
		}
		g.agents = append(g.agents, a)
	}
	g.waitAll("1.0.0", 90*time.Second)
	return g
}

// switchTimes reads the agents' logs: how long after pushed the first node
// began switching to v, and the sum over waves of the slowest node's work
// (from "upgrading under lease" to "switched").
func switchTimes(b *testing.B, f *fleet, v string, pushed time.Time) (first, work time.Duration) {
	type span struct{ from, to time.Time }
	spans := map[string]span{}
	for _, a := range f.agents {
		s := span{}
		scanLog(b, a.Log, func(at time.Time, line string) {
			switch {
			case at.Before(pushed):
			case strings.Contains(line, "msg=\"upgrading under lease\"") && strings.Contains(line, "version="+v):
				s.from = at
			case strings.Contains(line, "msg=switched") && strings.Contains(line, "version="+v) && !s.from.IsZero():
				s.to = at
			}
		})
		spans[a.Name] = s
	}
	waves := [][]string{{"node-1", "node-2"}, {"node-3", "node-4"}, {"node-5"}}
	first = time.Hour
	for _, w := range waves {
		slowest := time.Duration(0)
		for _, n := range w {
			s := spans[n]
			slowest = max(slowest, s.to.Sub(s.from))
			first = min(first, s.from.Sub(pushed))
		}
		work += slowest
	}
	return first, work
}

func scanLog(b testing.TB, path string, fn func(time.Time, string)) {
	fh, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			fn(at, line)
		}
	}
}
