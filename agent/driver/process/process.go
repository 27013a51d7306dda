package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
)

// Options configure a Driver. Zero values take the defaults in comments.
type Options struct {
	Logger *slog.Logger // default: discard
	// LogDir receives each workload's output in <LogDir>/<app>.log. Required.
	LogDir string
	// DrainTimeout applies when a manifest names none (default 10s).
	DrainTimeout time.Duration
	// RestartDelay is the first wait before restarting a crashed workload
	// (default 500ms); it doubles per crash up to MaxRestartDelay (default
	// 30s) and starts over once a process ran for StableAfter (default 30s).
	RestartDelay, MaxRestartDelay, StableAfter time.Duration
	// SocketDirs are where a release's unix sockets may be: a relative
	// address is under SocketDirs[0], an absolute one must be under one of
	// them (none: unix sockets are refused). The agent passes
	// <state-dir>/sockets, then its --socket-dir flags. Created if missing.
	SocketDirs []string
	// Shell runs the LISTEN_PID shim (default /bin/sh); "-" runs the
	// workload directly, without LISTEN_PID.
	Shell string
	// OnChange, when set, is called synchronously, in order, whenever what
	// runs for an app changes (start, swap, crash restart, adoption). The
	// agent persists it so that a restarted agent can Adopt.
	OnChange func(driver.Running)
}

// Driver supervises workload processes. Use New; Close stops supervising
// without stopping the workloads.
type Driver struct {
	opts   Options
	log    *slog.Logger
	ledger *ledger         // unix sockets the driver bound; nil without SocketDirs
	ctx    context.Context // the supervisors' and watchers' lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	apps map[string]*app
}

var _ driver.Driver = (*Driver)(nil)

// New returns a Driver.
func New(opts Options) (*Driver, error) {
	if opts.LogDir == "" {
		return nil, errors.New("process driver: LogDir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	defaults := []struct {
		v *time.Duration
		d time.Duration
	}{{&opts.DrainTimeout, 10 * time.Second}, {&opts.RestartDelay, 500 * time.Millisecond},
		{&opts.MaxRestartDelay, 30 * time.Second}, {&opts.StableAfter, 30 * time.Second}}
	for _, x := range defaults {
		if *x.v <= 0 {
			*x.v = x.d
		}
	}
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	dirs := make([]string, 0, len(opts.SocketDirs))
	for _, dir := range opts.SocketDirs {
		abs, err := filepath.Abs(dir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			return nil, fmt.Errorf("process driver: socket directory %s: %w", dir, err)
		}
		dirs = append(dirs, filepath.Clean(abs))
	}
	opts.SocketDirs = dirs
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{opts: opts, log: opts.Logger, ledger: newLedger(opts.SocketDirs), ctx: ctx, cancel: cancel, apps: map[string]*app{}}, nil
}

// Close stops supervising. Workloads keep running; sockets held by the agent
// are closed (the workloads hold their own copies).
func (d *Driver) Close() error {
	d.cancel()
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.apps {
		closeSockets(a.sockets)
	}
	d.apps = map[string]*app{}
	return nil
}

// app returns the app's supervision state, creating it (and its supervisor).
func (d *Driver) app(name string) *app {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.apps[name]; ok {
		return a
	}
	a := newApp(name)
	d.apps[name] = a
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.supervise(d.ctx, a)
	}()
	return a
}

// Switch implements driver.Driver: start next on the app's sockets, wait for
// healthy, retire the current process. On error the current one still runs.
func (d *Driver) Switch(ctx context.Context, cur *driver.Running, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	a := d.app(next.App)
	if a.isCold() {
		return d.coldSwitch(ctx, a, next, healthy)
	}
	socks, fresh, err := a.socketsFor(ctx, d, next.Manifest.Listen)
	if err != nil {
		return a.running(), fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err)
	}
	cand, err := d.start(d.ctx, next, socks, func(s procRecord) { a.update(d, func() { a.starting = &s }) })
	if err != nil {
		a.update(d, func() { a.starting = nil })
		closeSockets(fresh)
		return a.running(), fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err)
	}
	a.update(d, func() { a.cand, a.starting = cand, nil })
	if err := d.awaitHealthy(ctx, cand, healthy); err != nil {
		exited := cand.exited()
		d.abandon(ctx, a, cand, fresh)
		if exited && len(next.Manifest.Listen) == 0 && a.hasCurrent() {
			// A workload that opens its own port cannot start next to the
			// old one; without sockets in the manifest the agent cannot
			// hand one over, so it swaps stop-then-start instead.
			d.log.Warn("new version exited beside the old one and the release declares no listen sockets: stop-then-start swap",
				"app", next.App, "version", next.Version, "err", err)
			return d.coldSwitch(ctx, a, next, healthy)
		}
		return a.running(), fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err)
	}
	old := a.promote(d, cand, socks)
	if old != nil {
		if err := d.stop(ctx, old, d.drainTimeout(old.rec.Release)); err != nil {
			// Still draining: it stays recorded, for the next agent to finish.
			d.log.Warn("old version still draining", "app", next.App, "err", err)
		} else {
			a.update(d, func() { a.dropDraining(old) })
		}
	}
	return a.running(), nil
}

// awaitHealthy runs healthy while watching the candidate: a candidate that
// exits fails at once.
func (d *Driver) awaitHealthy(ctx context.Context, p *proc, healthy driver.HealthFunc) error {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- healthy(hctx) }()
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("not healthy: %w", err)
		}
		return nil
	case <-p.done:
		cancel()
		<-res
		return fmt.Errorf("pid %d exited before it was healthy (%v); see %s.log in the agent's log dir", p.rec.PID, p.exitErr, p.rec.Release.App)
	}
}

// abandon stops a candidate that failed and closes the sockets opened for it.
func (d *Driver) abandon(ctx context.Context, a *app, cand *proc, fresh []*socket) {
	if err := d.stop(context.WithoutCancel(ctx), cand, d.drainTimeout(cand.rec.Release)); err != nil {
		d.log.Warn("stop failed candidate", "app", a.name, "err", err)
	}
	closeSockets(fresh)
	a.update(d, func() { a.cand = nil })
}

// coldSwitch swaps an app adopted without its sockets: stop, then start.
// When the new version fails, the old release is started again.
func (d *Driver) coldSwitch(ctx context.Context, a *app, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	d.log.Warn("sockets not held: stop-then-start swap", "app", a.name, "version", next.Version)
	old := a.retireCold(d)
	if old != nil {
		// Not cut short by ctx: once stopping, something must be started.
		_ = d.stop(context.WithoutCancel(ctx), old, d.drainTimeout(old.rec.Release))
		a.update(d, func() { a.dropDraining(old) })
	}
	r, err := d.Switch(ctx, nil, next, healthy)
	if err == nil || old == nil {
		return r, err
	}
	if _, rerr := d.Switch(context.WithoutCancel(ctx), nil, old.rec.Release, func(context.Context) error { return nil }); rerr != nil {
		err = fmt.Errorf("%w; restarting %s failed too: %w", err, old.rec.Release.Version, rerr)
	}
	return a.running(), err
}

// Stop implements driver.Driver: stop every process of the app and release
// its sockets.
func (d *Driver) Stop(ctx context.Context, r driver.Running) error {
	d.mu.Lock()
	a, ok := d.apps[r.App]
	delete(d.apps, r.App)
	d.mu.Unlock()
	if !ok {
		return d.stopRecorded(ctx, r)
	}
	a.quit()
	var errs []error
	for _, p := range a.all() {
		errs = append(errs, d.stop(ctx, p, d.drainTimeout(p.rec.Release)))
	}
	closeSockets(a.sockets)
	for _, s := range a.sockets {
		if s.network == "unix" && !strings.HasPrefix(s.bound, "@") {
			_ = d.removeStaleSocket(s.bound) // only a socket the driver bound that nobody listens on any more
		}
	}
	if d.opts.OnChange != nil {
		d.opts.OnChange(driver.Running{App: r.App})
	}
	return errors.Join(errs...)
}
