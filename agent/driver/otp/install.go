package otp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// install unpacks next into a new release root, starts its VM and checks its
// health. On failure nothing of it is left: the VM is stopped and the root
// removed.
func (drv *Driver) install(ctx context.Context, next driver.Release, rel, tgz string, healthy driver.HealthFunc) (driver.Running, error) {
	wrap := func(err error) error { return fmt.Errorf("install %s %s: %w", next.App, next.Version, err) }
	appDir := filepath.Join(drv.opts.Dir, next.App)
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return driver.Running{}, wrap(err)
	}
	root, err := os.MkdirTemp(appDir, next.Version+"-")
	if err != nil {
		return driver.Running{}, wrap(err)
	}
	if err := release.Extract(ctx, tgz, root, release.Limits{MaxBytes: drv.opts.MaxUnpackedSize}); err != nil {
		os.RemoveAll(root)
		return driver.Running{}, wrap(err)
	}
	env := maps.Clone(next.Manifest.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, next.Env)
	d := Data{Root: root, Release: rel, Env: env, Switch: SwitchInstall}
	s := drv.script(d)
	if s.alive(ctx) {
		os.RemoveAll(root)
		return driver.Running{}, wrap(errors.New("a node with the release's node name already runs; stop it first"))
	}
	drv.log.Info("starting the VM", "app", next.App, "version", next.Version, "root", root)
	pid, err := drv.start(ctx, s)
	if err == nil {
		err = healthy(ctx)
		if err != nil {
			err = fmt.Errorf("not healthy: %w", err)
		}
	}
	if err != nil {
		drv.discard(context.WithoutCancel(ctx), s)
		return driver.Running{}, wrap(err)
	}
	return d.running(next.App, next.Version, pid), nil
}

// start runs `bin/<rel> daemon`, which returns once the node answers, and
// returns the VM's pid.
func (drv *Driver) start(ctx context.Context, s script) (int, error) {
	sctx, cancel := context.WithTimeout(ctx, drv.opts.StartTimeout)
	defer cancel()
	if _, err := s.run(sctx, "daemon"); err != nil {
		return 0, err
	}
	return s.pid(ctx)
}

// discard stops the VM of s, if it runs, and removes its root.
func (drv *Driver) discard(ctx context.Context, s script) {
	if err := s.stop(ctx); err != nil {
		drv.log.Error("could not stop a failed VM", "root", s.root, "err", err)
		return // keep the root: its VM may still run from it
	}
	if err := os.RemoveAll(s.root); err != nil {
		drv.log.Warn("could not remove a release root", "root", s.root, "err", err)
	}
}

// restart replaces cur's VM by a new one running next: stop the old VM,
// install next in a new root; if that fails, start the old root again. The
// old root is removed once next is healthy.
func (drv *Driver) restart(ctx context.Context, cur driver.Running, cd Data, next driver.Release, rel, tgz string, healthy driver.HealthFunc) (driver.Running, error) {
	old := drv.script(cd)
	if err := old.stop(ctx); err != nil {
		return cur, fmt.Errorf("switch %s to %s: stop %s: %w", next.App, next.Version, cur.Version, err)
	}
	r, err := drv.install(ctx, next, rel, tgz, healthy)
	if err != nil {
		ctx := context.WithoutCancel(ctx)
		pid, serr := drv.start(ctx, old)
		if serr != nil {
			return driver.Running{}, fmt.Errorf("switch %s to %s: %w; starting %s again failed: %v", next.App, next.Version, err, cur.Version, serr)
		}
		return cd.running(cur.App, cur.Version, pid), fmt.Errorf("switch %s to %s: %w; back on %s (VM restarted)", next.App, next.Version, err, cur.Version)
	}
	if err := os.RemoveAll(cd.Root); err != nil {
		drv.log.Warn("could not remove the previous release root", "root", cd.Root, "err", err)
	}
	nd, _ := DataOf(r) // install made it
	nd.Switch = SwitchRestart
	drv.log.Info("upgrade by restart done", "app", next.App, "from", cur.Version, "to", next.Version, "pid", r.PIDs)
	return nd.running(r.App, r.Version, r.PIDs[0]), nil
}
