package scale

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/reconciler"
)

// Seconds is a duration that reads as seconds in JSON.
type Seconds time.Duration

// MarshalJSON writes the duration in seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(s).Seconds(), 'f', 3, 64)), nil
}

func (s Seconds) String() string { return time.Duration(s).Round(time.Millisecond).String() }

// Load is the servers' load over a window.
type Load struct {
	Duration      Seconds   `json:"durationSeconds"`
	Git           GitCounts `json:"git"`
	GitPerSecond  float64   `json:"gitRequestsPerSecond"`
	Etcd          int64     `json:"etcdRequests"` // unary calls and streams opened
	EtcdPerSecond float64   `json:"etcdRequestsPerSecond"`
	// EtcdByKind counts the requests by method ("Txn", "Range", "Put",
	// "Watch stream", ...); "Txn lost" counts the transactions whose
	// compare failed (among "Txn").
	EtcdByKind map[string]int64 `json:"etcdRequestsByKind,omitempty"`
	// EtcdReplyBytes is the bytes the nodes received from etcd (encoded
	// replies), by method; a Range by the part of the key space it read
	// ("Range rollouts": the records, "Range leases"); "Watch events":
	// the watch responses.
	EtcdReplyBytes map[string]int64 `json:"etcdReplyBytes,omitempty"`
	// EtcdDetail counts the ranges by the part of the key space they
	// read ("Range rollouts", "Range leases", ...) and the calls that
	// returned an error, a timeout mostly, by what they asked for
	// ("Range rollouts failed", "Txn failed").
	EtcdDetail map[string]int64 `json:"etcdRequestDetail,omitempty"`
	CPU        Seconds          `json:"cpuSeconds"`    // this process: agents, coordinators, stores (and embedded etcd)
	GitCPU     Seconds          `json:"gitCPUSeconds"` // the git http-backend processes
	// EtcdCPU is the etcd server's when it runs as its own process
	// (Options.EtcdCommand; otherwise it is in CPU).
	EtcdCPU Seconds `json:"etcdCPUSeconds,omitempty"`
}

// Memory is the process's memory once every node runs, less what it used
// before the first node started, per node.
type Memory struct {
	RSSPerNode  int64 `json:"rssBytesPerNode"`
	HeapPerNode int64 `json:"heapBytesPerNode"` // runtime.MemStats.HeapInuse
	Goroutines  int   `json:"goroutines"`
}

// Result is one run's figures.
type Result struct {
	Nodes   int     `json:"nodes"`
	Wave    int     `json:"wave"`
	Waves   int     `json:"waves"` // ceil(nodes / wave)
	Store   string  `json:"store"`
	Switch  Seconds `json:"switchSeconds"`
	Install Seconds `json:"installSeconds"`
	Idle    Seconds `json:"idleSeconds"`
	// Webhooks is how many agents got the push webhook (Options.Webhooks).
	Webhooks int      `json:"webhooks"`
	Shared   []string `json:"shared"`
	Cores    int      `json:"cores"`
	// LoadAverage is the machine's 1-minute load average when the rollout
	// ended (/proc/loadavg): other work on the machine shows in every
	// figure.
	LoadAverage float64 `json:"loadAverage"`

	Startup     Seconds `json:"startupSeconds"`     // agents started to every node's report written
	FirstDeploy Seconds `json:"firstDeploySeconds"` // 1.0.0 pushed to every node on it
	// From the push of 1.1.0: the first node to fetch it, the last, and
	// the nodes' reaction (push to their first fetch of it).
	FirstLearned Seconds `json:"firstLearnedSeconds"`
	LastLearned  Seconds `json:"lastLearnedSeconds"`
	ReactionP50  Seconds `json:"reactionP50Seconds"`
	ReactionP99  Seconds `json:"reactionP99Seconds"`
	FirstActing  Seconds `json:"firstActingSeconds"` // push to the first switch beginning
	Rollout      Seconds `json:"rolloutSeconds"`     // push to the last node running 1.1.0
	Ideal        Seconds `json:"idealSeconds"`       // waves x switch time
	Ratio        float64 `json:"ratio"`              // Rollout / Ideal
	// WaveOverhead is (first switch begun to last switch ended, less waves
	// x switch time) / waves: what each wave costs beyond its switch.
	WaveOverhead Seconds `json:"waveOverheadSeconds"`
	// WaveGapMax is the longest wait between a planned wave's last switch
	// ending and the next wave's first switch beginning.
	WaveGapMax Seconds `json:"waveGapMaxSeconds"`

	IdleLoad    Load `json:"idle"`
	RolloutLoad Load `json:"rollout"`
	// CPUPerNode is the process's CPU during the rollout per node, as a
	// share of one core (git http-backend's is in RolloutLoad.GitCPU).
	CPUPerNode float64 `json:"cpuCoresPerNode"`
	Memory     Memory  `json:"memory"`

	// MaxSwitching is the largest number of nodes inside a switch at once
	// over the whole run (the invariant: at most Wave).
	MaxSwitching int `json:"maxSwitching"`
	// RolloutMaxSwitching is the same over the rollout, from the switches'
	// intervals (a cross-check of the live count).
	RolloutMaxSwitching int      `json:"rolloutMaxSwitching"`
	Outcome             string   `json:"outcome"`
	PlannedWaves        int      `json:"plannedWaves"`
	RecordedFailed      []string `json:"recordedFailed"`  // node: reason (no simulated node fails: must be empty)
	RecordedSkipped     []string `json:"recordedSkipped"` // node: reason (unreachable)
	AgentErrors         []string `json:"agentErrors"`
	SpecEvaluations     int64    `json:"specEvaluations"` // CUE evaluations done
	SpecLoads           int64    `json:"specLoads"`       // agents' LoadSpec calls (the rest were shared)

	waves [][]string // the rollout's plan, by node
	sw    []Interval // the rollout's switches
}

// measureRollout fills the figures of the rollout of tip, pushed at pushed
// and done (every node on it) at done.
func (r *Result) measureRollout(l *fleetLog, tip plumbing.Hash, pushed, done time.Time) {
	r.Cores, r.LoadAverage = runtime.NumCPU(), loadAverage()
	r.MaxSwitching = int(l.maxAt.Load())
	var react []time.Duration
	for _, t := range l.learnedAt(tip) {
		react = append(react, t.Sub(pushed))
	}
	if len(react) > 0 {
		r.FirstLearned, r.LastLearned = Seconds(react[0]), Seconds(react[len(react)-1])
		r.ReactionP50, r.ReactionP99 = Seconds(percentile(react, 0.50)), Seconds(percentile(react, 0.99))
	}
	sw := l.switchesTo("1.1.0", pushed)
	r.RolloutMaxSwitching = MaxConcurrent(sw)
	r.Rollout = Seconds(done.Sub(pushed))
	r.Ideal = Seconds(time.Duration(r.Waves) * time.Duration(r.Switch))
	r.Ratio = float64(r.Rollout) / float64(r.Ideal)
	if len(sw) > 0 {
		first, last := sw[0].Start, sw[0].End
		for _, iv := range sw {
			first = minTime(first, iv.Start)
			last = maxTime(last, iv.End)
		}
		r.FirstActing = Seconds(first.Sub(pushed))
		r.WaveOverhead = Seconds((last.Sub(first) - time.Duration(r.Ideal)) / time.Duration(r.Waves))
	}
	r.CPUPerNode = time.Duration(r.RolloutLoad.CPU).Seconds() / time.Duration(r.Rollout).Seconds() / float64(r.Nodes)
	r.sw = sw
}

// measureWaves uses the record's plan: the longest gap between waves.
func (r *Result) measureWaves() {
	byNode := map[string]Interval{}
	for _, iv := range r.sw {
		byNode[iv.Node] = iv
	}
	var prevEnd time.Time
	for _, wave := range r.waves {
		var start, end time.Time
		for _, n := range wave {
			iv, ok := byNode[n]
			if !ok {
				continue
			}
			if start.IsZero() || iv.Start.Before(start) {
				start = iv.Start
			}
			end = maxTime(end, iv.End)
		}
		if start.IsZero() {
			continue
		}
		if !prevEnd.IsZero() && start.Sub(prevEnd) > time.Duration(r.WaveGapMax) {
			r.WaveGapMax = Seconds(start.Sub(prevEnd))
		}
		prevEnd = end
	}
}

// MaxConcurrent is the largest number of intervals open at one instant
// (an interval ending when another starts does not overlap it).
func MaxConcurrent(ivs []Interval) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, iv := range ivs {
		edges = append(edges, edge{iv.Start, +1}, edge{iv.End, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // ends before starts at the same instant
	})
	n, peak := 0, 0
	for _, e := range edges {
		n += e.delta
		peak = max(peak, n)
	}
	return peak
}

// Check returns the broken invariants of a run, joined: more nodes
// switching at once than the wave size, nodes recorded failed (no
// simulated node fails), a rollout that did not complete, agents that
// stopped with an error.
func (r *Result) Check() error {
	var errs []error
	if err := CheckWaveBound(r.MaxSwitching, r.Wave); err != nil {
		errs = append(errs, err)
	}
	if err := CheckWaveBound(r.RolloutMaxSwitching, r.Wave); err != nil {
		errs = append(errs, fmt.Errorf("from the switches' intervals: %w", err))
	}
	if len(r.RecordedFailed) > 0 {
		errs = append(errs, fmt.Errorf("invariant broken: %d nodes recorded failed, none failed: %s",
			len(r.RecordedFailed), strings.Join(first(r.RecordedFailed, 5), "; ")))
	}
	if r.Outcome != reconciler.OutcomeCompleted {
		errs = append(errs, fmt.Errorf("the rollout's outcome is %q, want %q", r.Outcome, reconciler.OutcomeCompleted))
	}
	if len(r.AgentErrors) > 0 {
		errs = append(errs, fmt.Errorf("%d agents stopped with an error: %s", len(r.AgentErrors), strings.Join(first(r.AgentErrors, 5), "; ")))
	}
	return errors.Join(errs...)
}

// CheckWaveBound is the wave invariant: at most wave nodes switch at once.
func CheckWaveBound(switching, wave int) error {
	if switching > wave {
		return fmt.Errorf("invariant broken: %d nodes switched at once, more than the wave size %d", switching, wave)
	}
	return nil
}

// String summarises the load on one line.
func (l Load) String() string {
	s := fmt.Sprintf("%.1f Git requests/s (%d ref advertisements, %d fetches, %d pushes in %s), %.1f etcd requests/s",
		l.GitPerSecond, l.Git.RefAds, l.Git.Fetches, l.Git.Pushes, l.Duration, l.EtcdPerSecond)
	if len(l.EtcdReplyBytes) > 0 {
		var all int64
		for _, n := range l.EtcdReplyBytes {
			all += n
		}
		s += fmt.Sprintf(" (%.1f MiB/s received, records %.1f MiB/s)", float64(all)/(1<<20)/time.Duration(l.Duration).Seconds(),
			float64(l.EtcdReplyBytes["Range rollouts"])/(1<<20)/time.Duration(l.Duration).Seconds())
	}
	return s
}

// byKind lists counts by kind, the largest first.
func byKind(m map[string]int64) string {
	return largestFirst(m, func(n int64) string { return strconv.FormatInt(n, 10) })
}

// bytesByKind is byKind for byte counts, in MiB.
func bytesByKind(m map[string]int64) string {
	return largestFirst(m, func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) })
}

// largestFirst lists m's kinds with their counts as format writes them,
// the largest first.
func largestFirst(m map[string]int64, format func(int64) string) string {
	kinds := slices.Collect(maps.Keys(m))
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = k + " " + format(m[k])
	}
	return strings.Join(parts, ", ")
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// loadAverage reads the 1-minute load average (0 where there is none).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// mem is the process's memory at one moment.
type mem struct {
	rss, heap  int64
	goroutines int
}

func readMem() mem {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return mem{rss: rss(), heap: int64(ms.HeapInuse), goroutines: runtime.NumGoroutine()}
}

// rss reads VmRSS from /proc/self/status (0 where there is none).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func memPerNode(before, after mem, nodes int) Memory {
	return Memory{RSSPerNode: (after.rss - before.rss) / int64(nodes), HeapPerNode: (after.heap - before.heap) / int64(nodes),
		Goroutines: after.goroutines}
}

// WriteJSON writes r as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for a person.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("scale: %d nodes, waves of %d (%d waves), store %s, switch %s, install %s, push webhook to %d agents, %d cores (load average %.1f)",
		r.Nodes, r.Wave, r.Waves, r.Store, r.Switch, r.Install, r.Webhooks, r.Cores, r.LoadAverage)
	p("shared between simulated nodes:")
	for _, s := range r.Shared {
		p("  - %s", s)
	}
	p("start (every node reported): %s; first deployment (1.0.0): %s", r.Startup, r.FirstDeploy)
	p("push to first node learning: %s; to the last: %s", r.FirstLearned, r.LastLearned)
	p("node reaction to the push:   p50 %s, p99 %s", r.ReactionP50, r.ReactionP99)
	p("push to first node acting:   %s", r.FirstActing)
	p("rollout (push to last node): %s; ideal (waves x switch) %s; ratio %.2f", r.Rollout, r.Ideal, r.Ratio)
	p("per-wave overhead:           %s (longest gap between waves %s)", r.WaveOverhead, r.WaveGapMax)
	for _, l := range []struct {
		name string
		l    Load
	}{{"idle", r.IdleLoad}, {"rollout", r.RolloutLoad}} {
		g := l.l.Git
		p("%-8s Git %.1f requests/s (%d ref advertisements, %d of them cached, %d fetches, %d pushes in %s), etcd %.1f requests/s (%d)",
			l.name, l.l.GitPerSecond, g.RefAds, g.CachedAds, g.Fetches, g.Pushes, l.l.Duration, l.l.EtcdPerSecond, l.l.Etcd)
		if len(l.l.EtcdByKind) > 0 {
			p("         etcd by kind: %s", byKind(l.l.EtcdByKind))
		}
		if len(l.l.EtcdDetail) > 0 {
			p("         etcd ranges, and calls that failed: %s", byKind(l.l.EtcdDetail))
		}
		if len(l.l.EtcdReplyBytes) > 0 {
			p("         etcd reply bytes: %s", bytesByKind(l.l.EtcdReplyBytes))
		}
		etcdCPU := ""
		if l.l.EtcdCPU > 0 {
			etcdCPU = fmt.Sprintf(", etcd server %s", l.l.EtcdCPU)
		}
		p("         CPU: this process %s (%.1f%% of one core per node), git http-backend %s%s",
			l.l.CPU, 100*time.Duration(l.l.CPU).Seconds()/time.Duration(l.l.Duration).Seconds()/float64(r.Nodes), l.l.GitCPU, etcdCPU)
	}
	p("memory per node:             %.1f MiB RSS, %.1f MiB heap (%d goroutines in all)",
		float64(r.Memory.RSSPerNode)/(1<<20), float64(r.Memory.HeapPerNode)/(1<<20), r.Memory.Goroutines)
	p("spec evaluations:            %d for %d loads", r.SpecEvaluations, r.SpecLoads)
	p("most nodes switching at once: %d (wave %d; rollout, from intervals: %d)", r.MaxSwitching, r.Wave, r.RolloutMaxSwitching)
	p("outcome %s; %d waves planned; recorded failed %d, skipped %d", r.Outcome, r.PlannedWaves, len(r.RecordedFailed), len(r.RecordedSkipped))
	if err := r.Check(); err != nil {
		p("FAILED: %v", err)
	} else {
		p("invariants hold")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
