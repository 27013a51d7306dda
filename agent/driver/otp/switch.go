package otp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// safeVersion is what may go into an Erlang string literal unescaped (the
// manifest allows less).
var safeVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// Switch makes next the running version of its app: a first install, a hot
// upgrade or downgrade through a relup, or a restart of the VM when no relup
// leads to next. On error, what runs is returned: the previous version.
func (drv *Driver) Switch(ctx context.Context, cur *driver.Running, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	fail := func(err error) (driver.Running, error) {
		if cur != nil {
			return *cur, err
		}
		return driver.Running{}, err
	}
	rel, err := releaseName(next.Manifest)
	if err != nil {
		return fail(err)
	}
	if !safeVersion.MatchString(next.Version) {
		return fail(fmt.Errorf("otp driver: %s: version %q: want letters, digits, '.', '_', '+' or '-'", next.App, next.Version))
	}
	if len(next.Manifest.Listen) > 0 {
		return fail(fmt.Errorf("otp driver: %s %s: %s: listen: the VM opens its own sockets; remove listen", next.App, next.Version, release.ManifestName))
	}
	tgz, err := tarball(next, rel)
	if err != nil {
		return fail(err)
	}
	if cur == nil {
		return drv.install(ctx, next, rel, tgz, healthy)
	}
	cd, err := DataOf(*cur)
	if err != nil {
		return fail(err)
	}
	s := drv.script(cd)
	if cd.Release != rel || !s.alive(ctx) {
		drv.log.Info("restarting: the VM is down or runs another release", "app", next.App, "from", cur.Version, "to", next.Version)
		return drv.restart(ctx, *cur, cd, next, rel, tgz, healthy)
	}
	hot, why, err := drv.prepare(ctx, s, cur.Version, next.Version, tgz)
	if err != nil {
		return fail(fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err))
	}
	if !hot {
		drv.log.Info("restarting: no relup", "app", next.App, "from", cur.Version, "to", next.Version, "release_handler", why)
		return drv.restart(ctx, *cur, cd, next, rel, tgz, healthy)
	}
	return drv.hot(ctx, *cur, cd, next, healthy)
}

// prepare makes sure release_handler knows version (copying the tarball into
// the root and unpacking it when needed) and reports whether it can install
// it in the running VM; when it cannot, why is release_handler's reason.
func (drv *Driver) prepare(ctx context.Context, s script, from, version, tgz string) (hot bool, why string, err error) {
	if version == from {
		return true, "", nil // upgrade and install are no-ops
	}
	out, err := drv.unpack(ctx, s, version, tgz)
	if err != nil {
		return false, "", err
	}
	unpacked := strings.Contains(out, "Unpacked successfully")
	expr := fmt.Sprintf(`case release_handler:check_install_release("%s") of {ok, _, _} -> relup; Other -> Other end.`, version)
	out, err = s.eval(ctx, expr)
	if err != nil {
		return false, "", err
	}
	if strings.TrimSpace(lastLines(out, 1)) == "relup" {
		return true, "", nil
	}
	if unpacked {
		if _, err := s.run(ctx, "uninstall", version); err != nil {
			drv.log.Warn("could not remove the unpacked release", "version", version, "err", err)
		}
	}
	return false, out, nil
}

// unpack places tgz where the release script looks for it and has
// release_handler unpack it into the root (the script does nothing when
// release_handler knows the version already).
func (drv *Driver) unpack(ctx context.Context, s script, version, tgz string) (string, error) {
	dst := filepath.Join(s.root, "releases", s.rel+"-"+version+".tar.gz")
	if err := copyFile(tgz, dst); err != nil {
		return "", fmt.Errorf("place the relx tarball: %w", err)
	}
	defer os.Remove(dst) // unpacked into lib/ and releases/<version>/: not needed any more
	return s.run(ctx, "unpack", version)
}

// hot installs next in the running VM, checks its health and makes it
// permanent; on any failure it goes back to cur.
func (drv *Driver) hot(ctx context.Context, cur driver.Running, cd Data, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	s := drv.script(cd)
	pid0, err := s.pid(ctx)
	if err != nil {
		return cur, fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err)
	}
	fail := func(cause error) (driver.Running, error) {
		cause = fmt.Errorf("switch %s to %s: %w", next.App, next.Version, cause)
		r, how, err := drv.restore(ctx, cur, cd, next.Version, pid0)
		if err != nil {
			return r, fmt.Errorf("%w; %w", cause, err)
		}
		if strings.Contains(cause.Error(), "install_release failed") && how == howDowngraded {
			// release_handler's error action: init:restart/0, in the same
			// OS process, on the permanent release.
			how = howRelupFailed
		}
		return r, fmt.Errorf("%w; back on %s (%s)", cause, cur.Version, how)
	}
	if next.Version == cur.Version {
		if err := healthy(ctx); err != nil {
			return cur, fmt.Errorf("switch %s to %s: not healthy: %w", next.App, next.Version, err)
		}
		return cur, nil
	}
	if _, err := s.run(ctx, "upgrade", next.Version, "--no-permanent"); err != nil {
		return fail(fmt.Errorf("release_handler: %w", err))
	}
	pid, err := s.pid(ctx)
	if err != nil {
		return fail(err)
	}
	if pid != pid0 {
		// A relup may restart the emulator (restart_new_emulator): allowed,
		// but not what "hot" promises, so say it.
		drv.log.Warn("the VM restarted during the upgrade", "app", next.App, "pid_before", pid0, "pid_after", pid)
	}
	if err := healthy(ctx); err != nil {
		return fail(fmt.Errorf("not healthy: %w", err))
	}
	if _, err := s.run(ctx, "install", next.Version); err != nil {
		return fail(fmt.Errorf("make permanent: %w", err))
	}
	drv.prune(ctx, s, next.Version, cur.Version)
	drv.log.Info("hot upgrade done", "app", next.App, "from", cur.Version, "to", next.Version, "pid", pid)
	nd := cd
	nd.Switch = SwitchRelup
	return nd.running(next.App, next.Version, pid), nil
}

// How restore went back, for error messages.
const (
	howDowngraded  = "downgraded in the running VM"
	howRelupFailed = "the relup failed; release_handler restarted the node on the permanent release"
	howRestarted   = "the VM died; restarted"
	howRebooted    = "the downgrade failed; restarted the VM"
)

// restore brings cur back after a failed or interrupted hot switch to
// failed: a downgrade in the running VM, else a restart of the VM on its
// permanent release (cur's, since failed was never made permanent, or was
// made permanent last). pid0 is the VM's OS pid before the switch. It runs
// even when ctx is done: the previous version must run again. It returns
// what runs and how it went back, or why it could not.
func (drv *Driver) restore(ctx context.Context, cur driver.Running, cd Data, failed string, pid0 int) (driver.Running, string, error) {
	ctx = context.WithoutCancel(ctx)
	s := drv.script(cd)
	how := howDowngraded
	if !drv.waitReady(ctx, s, pid0) {
		how = howRestarted
		if _, err := drv.start(ctx, s); err != nil {
			return driver.Running{}, "", fmt.Errorf("starting %s again failed: %w", cur.Version, err)
		}
	}
	if _, err := s.run(ctx, "downgrade", cur.Version); err != nil {
		drv.log.Error("hot downgrade failed, restarting the VM", "app", cur.App, "to", cur.Version, "err", err)
		how = howRebooted
		if err := drv.reboot(ctx, s); err != nil {
			return driver.Running{}, "", fmt.Errorf("restarting %s failed too: %w", cur.Version, err)
		}
	}
	if _, err := s.run(ctx, "uninstall", failed); err != nil {
		drv.log.Warn("could not remove the failed release", "app", cur.App, "version", failed, "err", err)
	}
	pid, err := s.pid(ctx)
	if err != nil {
		return cur, how, fmt.Errorf("back on %s (%s) but: %w", cur.Version, how, err)
	}
	drv.log.Warn("previous version restored", "app", cur.App, "version", cur.Version, "failed", failed, "how", how)
	return cd.running(cur.App, cur.Version, pid), how, nil
}

// waitReady waits until release_handler answers in the VM, as long as the
// VM's process pid lives (a node restarting its applications does not
// answer for a moment), for at most StartTimeout. False means the VM is gone.
func (drv *Driver) waitReady(ctx context.Context, s script, pid int) bool {
	deadline := time.Now().Add(drv.opts.StartTimeout)
	for {
		if _, err := s.releases(ctx); err == nil {
			return true
		}
		if pid <= 0 || !processExists(pid) || time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// processExists reports whether a process pid exists.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// reboot stops the VM and starts it again on its permanent release.
func (drv *Driver) reboot(ctx context.Context, s script) error {
	if err := s.stop(ctx); err != nil {
		return err
	}
	_, err := drv.start(ctx, s)
	return err
}

// prune uninstalls the releases marked old other than keep, so a root holds
// the running release and the one before it.
func (drv *Driver) prune(ctx context.Context, s script, running, keep string) {
	rs, err := s.releases(ctx)
	if err != nil {
		drv.log.Warn("could not list releases", "err", err)
		return
	}
	for _, r := range rs {
		if r.Version != running && r.Version != keep && (r.Status == "old" || r.Status == "unpacked") {
			if _, err := s.run(ctx, "uninstall", r.Version); err != nil {
				drv.log.Warn("could not remove an old release", "version", r.Version, "err", err)
			}
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
