package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// Options configure a Driver.
type Options struct {
	Logger *slog.Logger // default: discard
	// HookTimeout bounds each hook (default 2m).
	HookTimeout time.Duration
}

// Driver runs releases through their hooks.
type Driver struct {
	opts Options
}

var _ driver.Driver = (*Driver)(nil)

// New returns a Driver.
func New(opts Options) *Driver {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HookTimeout <= 0 {
		opts.HookTimeout = 2 * time.Minute
	}
	return &Driver{opts: opts}
}

// data is driver.Running.Data: the release, so that a rollback to it can run
// its activate hook.
type data struct {
	Release driver.Release `json:"release"`
}

// Switch implements driver.Driver.
func (d *Driver) Switch(ctx context.Context, cur *driver.Running, next driver.Release, healthy driver.HealthFunc) (driver.Running, error) {
	prev := previous(cur)
	keep := driver.Running{}
	if cur != nil {
		keep = *cur
	}
	hooks := next.Manifest.Hooks
	if hooks == nil || len(hooks.Activate) == 0 {
		return keep, fmt.Errorf("switch %s to %s: exec driver: release has no activate hook", next.App, next.Version)
	}
	if err := d.hook(ctx, "install", hooks.Install, next, prev); err != nil {
		return keep, fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err)
	}
	err := d.hook(ctx, "activate", hooks.Activate, next, prev)
	if err == nil {
		err = d.hook(ctx, "health", hooks.Health, next, prev)
	}
	if err == nil && healthy != nil {
		if herr := healthy(ctx); herr != nil {
			err = fmt.Errorf("not healthy: %w", herr)
		}
	}
	if err != nil {
		err = fmt.Errorf("switch %s to %s: %w", next.App, next.Version, err)
		if rerr := d.rollback(context.WithoutCancel(ctx), next, prev); rerr != nil {
			err = fmt.Errorf("%w; rollback failed too: %w", err, rerr)
		}
		return keep, err
	}
	b, _ := json.Marshal(data{Release: next}) // plain data: cannot fail
	return driver.Running{App: next.App, Version: next.Version, Dir: next.Dir, Data: b}, nil
}

// rollback makes prev active again after next failed.
func (d *Driver) rollback(ctx context.Context, next driver.Release, prev *driver.Release) error {
	if next.Manifest.Hooks != nil && len(next.Manifest.Hooks.Rollback) > 0 {
		return d.hook(ctx, "rollback", next.Manifest.Hooks.Rollback, next, prev)
	}
	if prev != nil && prev.Manifest.Hooks != nil {
		return d.hook(ctx, "activate", prev.Manifest.Hooks.Activate, *prev, nil)
	}
	return nil
}

// Adopt implements driver.Driver: hooks keep their own state, so there is
// nothing to take back.
func (d *Driver) Adopt(ctx context.Context, r driver.Running) error { return nil }

// Stop implements driver.Driver: the rollback hook with no previous version.
func (d *Driver) Stop(ctx context.Context, r driver.Running) error {
	rel := previous(&r)
	if rel == nil || rel.Manifest.Hooks == nil {
		return nil
	}
	if err := d.hook(ctx, "rollback", rel.Manifest.Hooks.Rollback, *rel, nil); err != nil {
		return fmt.Errorf("stop %s %s: %w", r.App, r.Version, err)
	}
	return nil
}

// previous is the release recorded in a Running, or nil.
func previous(cur *driver.Running) *driver.Release {
	if cur == nil || len(cur.Data) == 0 {
		return nil
	}
	var dt data
	if err := json.Unmarshal(cur.Data, &dt); err != nil {
		return nil
	}
	return &dt.Release
}

// hook runs one hook of rel; an empty argv is a hook not given.
func (d *Driver) hook(ctx context.Context, name string, argv []string, rel driver.Release, prev *driver.Release) error {
	if len(argv) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.HookTimeout)
	defer cancel()
	// After node variables, symlinks resolved: a program of the release.
	path, err := release.Program(rel.Dir, argv[0])
	if err != nil {
		return fmt.Errorf("%s hook: %w", name, err)
	}
	cmd := osexec.CommandContext(ctx, path, argv[1:]...)
	cmd.Dir = rel.Dir
	cmd.Env = hookEnv(name, rel, prev)
	// Its own process group: a hook cut short by its timeout is killed
	// with what it forked. A hook that ends normally may leave a daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d.opts.Logger.Info("hook", "app", rel.App, "version", rel.Version, "hook", name, "took", time.Since(start), "err", err)
	if err != nil {
		return fmt.Errorf("%s hook %v: %w: %s", name, argv, err, tail(out))
	}
	return nil
}

// hookEnv is the agent's environment without its own secrets and settings
// (RECONCILER_*, COSIGN_*), the manifest's env, rel.Env and the hook's
// variables.
func hookEnv(name string, rel driver.Release, prev *driver.Release) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RECONCILER_") && !strings.HasPrefix(kv, "COSIGN_") {
			env = append(env, kv)
		}
	}
	env = append(env, sorted(rel.Manifest.Env)...)
	env = append(env, sorted(rel.Env)...)
	pv, pd := "", ""
	if prev != nil {
		pv, pd = prev.Version, prev.Dir
	}
	return append(env, "RECONCILER_HOOK="+name, "RECONCILER_APP="+rel.App, "RECONCILER_VERSION="+rel.Version,
		"RECONCILER_RELEASE_DIR="+rel.Dir, "RECONCILER_PREVIOUS_VERSION="+pv, "RECONCILER_PREVIOUS_DIR="+pd)
}

func sorted(m map[string]string) []string {
	var env []string
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// tail is the end of a hook's output, for error messages.
func tail(out []byte) string {
	s := strings.TrimSpace(string(out))
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}
