package process

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
)

// Adopt implements driver.Driver. It settles what a previous agent left
// (see the package doc): a candidate whose health was never confirmed is
// stopped, draining processes are stopped, the current process is adopted
// with its sockets, or started again when it died meanwhile. The outcome is
// reported through Options.OnChange.
func (d *Driver) Adopt(ctx context.Context, r driver.Running) error {
	rec, err := decodeRecord(r)
	if err != nil {
		return err
	}
	for _, p := range append(rec.Draining, derefs(rec.Candidate)...) {
		d.stopRecord(ctx, p)
	}
	a := d.app(r.App)
	if rec.Starting != nil {
		d.stopPending(ctx, *rec.Starting)
	}
	cur := rec.Current
	if cur == nil {
		a.update(d, func() {}) // what was left is stopped: record that nothing runs
		return nil
	}
	if !cur.alive() {
		d.log.Warn("workload gone: starting it again", "app", r.App, "version", cur.Release.Version, "pid", cur.PID)
		d.stopRemnants(ctx, *cur) // its children would serve beside the new process
		_, err := d.Switch(ctx, nil, cur.Release, func(context.Context) error { return nil })
		return err
	}
	p := &proc{rec: *cur, started: time.Now(), done: make(chan struct{})}
	if err := d.watch(d.ctx, p, nil); err != nil {
		return fmt.Errorf("adopt %s %s: %w", r.App, cur.Release.Version, err)
	}
	socks, err := takeSockets(cur.PID, cur.Release.Manifest.Listen, cur.Sockets)
	if err != nil {
		d.log.Warn("adopted without sockets: the next swap stops before it starts", "app", r.App, "err", err)
	}
	a.update(d, func() { a.cur, a.sockets, a.cold = p, socks, err != nil })
	d.log.Info("adopted", "app", r.App, "version", cur.Release.Version, "pid", cur.PID, "sockets", len(socks))
	return nil
}

func derefs(p *procRecord) []procRecord {
	if p == nil {
		return nil
	}
	return []procRecord{*p}
}

// stopRecord stops a recorded process that is not ours to keep.
func (d *Driver) stopRecord(ctx context.Context, pr procRecord) {
	if !pr.alive() {
		d.stopRemnants(ctx, pr)
		return
	}
	p := &proc{rec: pr, done: make(chan struct{})}
	if err := d.watch(d.ctx, p, nil); err != nil {
		d.log.Warn("cannot watch leftover process: killing it", "app", pr.Release.App, "pid", pr.PID, "err", err)
		signalGroup(pr.PID, syscall.SIGKILL)
		return
	}
	if err := d.stop(ctx, p, d.drainTimeout(pr.Release)); err != nil {
		d.log.Warn("stop leftover process", "app", pr.Release.App, "pid", pr.PID, "err", err)
	}
}

// stopRecorded stops the processes of an app this driver does not manage
// (a Stop before any Adopt).
func (d *Driver) stopRecorded(ctx context.Context, r driver.Running) error {
	rec, err := decodeRecord(r)
	if err != nil {
		return err
	}
	for _, p := range append(rec.Draining, append(derefs(rec.Candidate), derefs(rec.Current)...)...) {
		d.stopRecord(ctx, p)
	}
	if rec.Starting != nil {
		d.stopPending(ctx, *rec.Starting)
	}
	return nil
}

// stopPending stops what a start left whose pid was never recorded (the
// agent was killed between the fork and recording it): every process
// carrying its instance token, with the drain a stop gives, then SIGKILL.
// It never became the candidate, so nothing of it is kept.
func (d *Driver) stopPending(ctx context.Context, pr procRecord) {
	left := pr.members()
	if len(left) == 0 {
		return
	}
	d.log.Warn("a start the previous agent did not record left processes: stopping them", "app", pr.Release.App,
		"version", pr.Release.Version, "pids", left)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	t := time.NewTimer(d.drainTimeout(pr.Release))
	defer t.Stop()
	if waitSession(ctx, pr, t.C) == nil {
		return
	}
	for _, pid := range pr.members() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	kill := time.NewTimer(5 * time.Second)
	defer kill.Stop()
	if err := waitSession(ctx, pr, kill.C); err != nil {
		d.log.Error("processes of an unrecorded start still run after SIGKILL", "app", pr.Release.App, "pids", pr.members(), "err", err)
	}
}

// stopRemnants stops what is left of a recorded process that has exited:
// the processes of its session (children it forked, which a previous
// agent did not get to stop). Only while the pid is free, or still the
// recorded process as a zombie: then nobody else can lead a session with
// that id, so its members are the recorded process's.
func (d *Driver) stopRemnants(ctx context.Context, pr procRecord) {
	if st, state, err := procStat(pr.PID); err == nil && (st != pr.StartTime || state != "Z") {
		return // the pid is another process's now
	}
	left := pr.members()
	if len(left) == 0 {
		return
	}
	d.log.Warn("processes of a stopped version left: stopping them", "app", pr.Release.App, "version", pr.Release.Version,
		"session", pr.PID, "pids", left)
	p := &proc{rec: pr, done: make(chan struct{})}
	close(p.done) // the leader is gone
	if err := d.stop(ctx, p, d.drainTimeout(pr.Release)); err != nil {
		d.log.Warn("stop what is left of a version", "app", pr.Release.App, "session", pr.PID, "err", err)
	}
}
