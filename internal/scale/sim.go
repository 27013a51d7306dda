package scale

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

// Interval is one switch of one node: from the driver's Switch call to its
// return, on the harness's clock.
type Interval struct {
	Node       string
	Version    string
	Start, End time.Time
}

// fleetLog is what the simulated nodes did, as the harness sees it: every
// switch, how many switch at once, and when each node first saw a tip.
type fleetLog struct {
	clock clock.Clock

	switching atomic.Int64 // nodes inside Switch now
	maxAt     atomic.Int64 // the largest value switching reached

	mu        sync.Mutex
	intervals []Interval
	active    map[string]string                      // node -> version running
	learned   map[plumbing.Hash]map[string]time.Time // tip -> node -> first Fetch returning it
	at        map[string]int                         // version -> nodes running it
	changed   chan struct{}                          // closed and replaced on every switch
}

func newFleetLog(c clock.Clock) *fleetLog {
	return &fleetLog{clock: c, active: map[string]string{}, learned: map[plumbing.Hash]map[string]time.Time{},
		at: map[string]int{}, changed: make(chan struct{})}
}

// begin counts a node into the switching set and keeps the largest count.
func (l *fleetLog) begin() {
	n := l.switching.Add(1)
	for {
		m := l.maxAt.Load()
		if n <= m || l.maxAt.CompareAndSwap(m, n) {
			return
		}
	}
}

// end records a switch (ok: the node now runs version).
func (l *fleetLog) end(iv Interval, ok bool) {
	l.switching.Add(-1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.intervals = append(l.intervals, iv)
	if ok {
		if old, had := l.active[iv.Node]; had {
			l.at[old]--
		}
		l.active[iv.Node] = iv.Version
		l.at[iv.Version]++
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// running returns how many nodes run version, and a channel closed on the
// next switch.
func (l *fleetLog) running(version string) (int, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at[version], l.changed
}

func (l *fleetLog) saw(node string, tip plumbing.Hash) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.learned[tip]
	if m == nil {
		m = map[string]time.Time{}
		l.learned[tip] = m
	}
	if _, ok := m[node]; !ok {
		m[node] = l.clock.Now()
	}
}

// learnedAt returns when each node first fetched tip, sorted.
func (l *fleetLog) learnedAt(tip plumbing.Hash) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for _, t := range l.learned[tip] {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// switchesTo returns the switches to version that started at or after since.
func (l *fleetLog) switchesTo(version string, since time.Time) []Interval {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Interval
	for _, iv := range l.intervals {
		if iv.Version == version && !iv.Start.Before(since) {
			out = append(out, iv)
		}
	}
	return out
}

// simDriver is the node's driver: a switch takes the switch time on the
// clock and runs nothing. It never fails, so any node recorded failed is
// the harness's (or the coordinator's) finding. One per node.
type simDriver struct {
	node  string
	took  time.Duration
	log   *fleetLog
	clock clock.Clock
}

// Switch implements driver.Driver.
func (d *simDriver) Switch(ctx context.Context, _ *driver.Running, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	iv := Interval{Node: d.node, Version: next.Version, Start: d.clock.Now()}
	d.log.begin()
	err := d.clock.Sleep(ctx, d.took)
	if err == nil {
		err = healthy(ctx)
	}
	iv.End = d.clock.Now()
	d.log.end(iv, err == nil)
	if err != nil {
		return driver.Running{}, fmt.Errorf("simulated switch of %s to %s on %s: %w", next.App, next.Version, d.node, err)
	}
	return driver.Running{App: next.App, Version: next.Version, Dir: next.Dir}, nil
}

// Adopt implements driver.Driver: nothing runs, nothing to take back.
func (d *simDriver) Adopt(context.Context, driver.Running) error { return nil }

// Stop implements driver.Driver.
func (d *simDriver) Stop(context.Context, driver.Running) error { return nil }

// simInstaller "downloads" a release: it waits the install time and writes
// the release.json the agent reads back; no artifact is fetched or
// verified.
type simInstaller struct {
	took  time.Duration
	clock clock.Clock
}

// Install implements agent.Installer.
func (s simInstaller) Install(ctx context.Context, _ release.Source, want release.Want, dest string) (*release.Manifest, error) {
	if err := s.clock.Sleep(ctx, s.took); err != nil {
		return nil, fmt.Errorf("simulated install of %s %s: %w", want.App, want.Version, err)
	}
	m := release.Manifest{App: want.App, Version: want.Version, Command: []string{"bin/sim"}}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return nil, fmt.Errorf("simulated install of %s %s: %w", want.App, want.Version, err)
	}
	if err := os.WriteFile(filepath.Join(dest, release.ManifestName), b, 0o644); err != nil {
		return nil, fmt.Errorf("simulated install of %s %s: %w", want.App, want.Version, err)
	}
	return &m, nil
}

// specCache evaluates each distinct set of spec files once, for every
// node: the fleet it returns is read-only to the agent (DecideInput.Fleet).
type specCache struct {
	mu    sync.Mutex
	byKey map[[32]byte]*specEntry
	evals atomic.Int64 // evaluations done (the rest were shared)
	calls atomic.Int64
}

type specEntry struct {
	once  sync.Once
	fleet *spec.Fleet
	err   error
}

// LoadSpec implements agent.SpecLoader.
func (c *specCache) LoadSpec(_ context.Context, files map[string][]byte) (*spec.Fleet, error) {
	c.calls.Add(1)
	key := filesKey(files)
	c.mu.Lock()
	e := c.byKey[key]
	if e == nil {
		e = &specEntry{}
		c.byKey[key] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		c.evals.Add(1)
		e.fleet, e.err = spec.LoadFiles(files)
	})
	return e.fleet, e.err
}

func filesKey(files map[string][]byte) [32]byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s%d:", len(n), n, len(files[n]))
		h.Write(files[n])
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// seeing wraps a node's Desired to note when it first fetched each tip.
type seeing struct {
	*fleetrepo.Desired // and so an agent.Packer: the tip's objects travel beside the tip key
	node               string
	log                *fleetLog
}

// Fetch implements agent.Desired.
func (s seeing) Fetch(ctx context.Context) (plumbing.Hash, error) {
	h, err := s.Desired.Fetch(ctx)
	if err == nil && !h.IsZero() {
		s.log.saw(s.node, h)
	}
	return h, err
}
