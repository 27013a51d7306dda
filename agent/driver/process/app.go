package process

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// app is what the driver runs for one app. Its supervisor goroutine
// restarts the current process when it crashes.
type app struct {
	name    string
	changed chan struct{} // cap 1: the current process changed
	quitOne sync.Once
	quitc   chan struct{} // closed by Stop: the supervisor exits

	mu       sync.Mutex
	sockets  []*socket // held for the current process, in manifest order
	cur      *proc
	cand     *proc   // being started, health unconfirmed
	draining []*proc // retired, asked to stop
	cold     bool    // adopted without its sockets
	// starting is a start under way whose pid is not known yet.
	starting *procRecord
}

func newApp(name string) *app {
	return &app{name: name, changed: make(chan struct{}, 1), quitc: make(chan struct{})}
}

func (a *app) quit() { a.quitOne.Do(func() { close(a.quitc) }) }

// update changes the app under its lock and reports the change.
func (a *app) update(d *Driver, f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
	a.reportLocked(d)
}

func (a *app) reportLocked(d *Driver) {
	select {
	case a.changed <- struct{}{}:
	default:
	}
	if d.opts.OnChange != nil {
		d.opts.OnChange(a.recordLocked().running(a.name))
	}
}

func (a *app) recordLocked() record {
	var rec record
	if a.cur != nil {
		rec.Current = &a.cur.rec
	}
	if a.cand != nil {
		rec.Candidate = &a.cand.rec
	}
	for _, p := range a.draining {
		rec.Draining = append(rec.Draining, p.rec)
	}
	rec.Starting = a.starting
	return rec
}

func (a *app) running() driver.Running {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.recordLocked().running(a.name)
}

func (a *app) isCold() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cold && a.cur != nil
}

// hasCurrent reports whether a version runs.
func (a *app) hasCurrent() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur != nil
}

// all returns every process of the app.
func (a *app) all() []*proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps := slices.Clone(a.draining)
	for _, p := range []*proc{a.cur, a.cand} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// socketsFor returns the sockets for ls: held ones reused, others opened
// (also returned as fresh, for the caller to close on failure).
func (a *app) socketsFor(ctx context.Context, d *Driver, ls []release.Listener) (socks, fresh []*socket, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.socketsForLocked(ctx, d, ls)
}

func (a *app) socketsForLocked(ctx context.Context, d *Driver, ls []release.Listener) (socks, fresh []*socket, err error) {
	held := a.sockets
	for _, l := range ls {
		i := slices.IndexFunc(held, func(s *socket) bool { return s.key == socketKey(l) })
		if i >= 0 {
			s := *held[i]
			s.name = l.Name
			socks = append(socks, &s)
			continue
		}
		s, err := d.openSocket(ctx, l)
		if err != nil {
			closeSockets(fresh)
			return nil, nil, err
		}
		socks, fresh = append(socks, s), append(fresh, s)
	}
	return socks, fresh, nil
}

// promote makes cand the current process on socks and retires the old one,
// which it returns for the caller to stop.
func (a *app) promote(d *Driver, cand *proc, socks []*socket) *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cur
	if old != nil {
		old.stopping.Store(true)
		a.draining = append(a.draining, old)
	}
	for _, s := range a.sockets {
		if !slices.ContainsFunc(socks, func(n *socket) bool { return n.file == s.file }) {
			s.file.Close()
		}
	}
	a.cur, a.cand, a.sockets = cand, nil, socks
	a.reportLocked(d)
	return old
}

// retireCold moves the current process of a cold app to draining.
func (a *app) retireCold(d *Driver) *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cur
	if old != nil {
		old.stopping.Store(true)
		a.draining = append(a.draining, old)
	}
	a.cur, a.cold = nil, false
	a.reportLocked(d)
	return old
}

func (a *app) dropDraining(p *proc) {
	a.draining = slices.DeleteFunc(a.draining, func(q *proc) bool { return q == p })
}

// supervise restarts the current process when it exits unasked, with
// exponential backoff, until ctx ends or the app is stopped.
func (d *Driver) supervise(ctx context.Context, a *app) {
	delay := d.opts.RestartDelay
	for {
		a.mu.Lock()
		p := a.cur
		a.mu.Unlock()
		var exited <-chan struct{}
		if p != nil && !p.stopping.Load() {
			exited = p.done
		}
		select {
		case <-ctx.Done():
			return
		case <-a.quitc:
			return
		case <-a.changed:
			continue
		case <-exited:
		}
		if time.Since(p.started) >= d.opts.StableAfter {
			delay = d.opts.RestartDelay
		}
		d.log.Warn("workload exited: restarting", "app", a.name, "version", p.rec.Release.Version,
			"pid", p.rec.PID, "exit", p.exitErr, "after", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.quitc:
			t.Stop()
			return
		case <-a.changed:
			t.Stop()
			continue
		case <-t.C:
		}
		delay = min(2*delay, d.opts.MaxRestartDelay)
		d.restart(ctx, a, p)
	}
}

// restart starts p's release again in its place, unless it was replaced.
func (d *Driver) restart(ctx context.Context, a *app, p *proc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur != p {
		return
	}
	if a.cold { // adopted without its sockets: bind them again
		socks, _, err := a.socketsForLocked(ctx, d, p.rec.Release.Manifest.Listen)
		if err != nil {
			d.log.Error("restart failed", "app", a.name, "version", p.rec.Release.Version, "err", err)
			return
		}
		a.sockets, a.cold = socks, false
	}
	np, err := d.start(ctx, p.rec.Release, a.sockets, func(s procRecord) { a.starting = &s; a.reportLocked(d) })
	a.starting = nil
	if err != nil {
		a.reportLocked(d)
		d.log.Error("restart failed", "app", a.name, "version", p.rec.Release.Version, "err", err)
		select { // try again after the next delay
		case a.changed <- struct{}{}:
		default:
		}
		return
	}
	a.cur = np
	a.reportLocked(d)
}
