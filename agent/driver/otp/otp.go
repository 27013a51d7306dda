package otp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// Options configure a Driver.
type Options struct {
	// Dir is where release roots live: Dir/<app>/<version>-<random>/, one
	// per VM ever started (required; the agent's state directory).
	Dir string
	// Environ is the base environment of the VM and of its scripts; the
	// release's env is added to it. Nil means the agent's own environment.
	Environ []string
	// ScriptTimeout bounds one call of bin/<rel> (default 2m).
	ScriptTimeout time.Duration
	// StartTimeout bounds `bin/<rel> daemon`, which waits until the node
	// answers (default 1m).
	StartTimeout time.Duration
	// MaxUnpackedSize bounds the bytes a relx tarball unpacks to (default
	// 2 GiB).
	MaxUnpackedSize int64
	// Logger receives what the driver does (default: discarded).
	Logger *slog.Logger
}

// Validate checks the options.
func (o Options) Validate() error {
	if o.Dir == "" {
		return errors.New("otp driver: Options.Dir is required")
	}
	if o.ScriptTimeout < 0 || o.StartTimeout < 0 || o.MaxUnpackedSize < 0 {
		return errors.New("otp driver: negative ScriptTimeout, StartTimeout or MaxUnpackedSize")
	}
	return nil
}

// Driver runs relx releases and upgrades them with release_handler.
type Driver struct {
	opts Options
	log  *slog.Logger
}

var _ driver.Driver = (*Driver)(nil)

// New returns a driver; it starts nothing.
func New(opts Options) (*Driver, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("otp driver: %w", err)
	}
	opts.Dir = dir
	if opts.ScriptTimeout == 0 {
		opts.ScriptTimeout = 2 * time.Minute
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = time.Minute
	}
	if opts.MaxUnpackedSize == 0 {
		opts.MaxUnpackedSize = 2 << 30
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Driver{opts: opts, log: log.With("driver", "otp")}, nil
}

// How a version came to run, in Data.Switch.
const (
	SwitchInstall = "install" // first install: unpack and start
	SwitchRelup   = "relup"   // hot: release_handler in the running VM
	SwitchRestart = "restart" // cold: the VM restarted on the new release
)

// Data is the driver's part of driver.Running (its Data field).
type Data struct {
	// Root is the release root: bin/<rel>, releases/, lib/.
	Root string `json:"root"`
	// Release is the relx release name.
	Release string `json:"release"`
	// Env is what the VM was started with, on top of the base environment;
	// every later call of bin/<rel> uses it too (node name, cookie).
	Env map[string]string `json:"env,omitempty"`
	// Switch says how the version came to run: install, relup or restart.
	Switch string `json:"switch"`
}

// DataOf decodes the driver's data from r.
func DataOf(r driver.Running) (Data, error) {
	var d Data
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return d, fmt.Errorf("otp driver: %s %s: state: %w", r.App, r.Version, err)
	}
	if d.Root == "" || d.Release == "" {
		return d, fmt.Errorf("otp driver: %s %s: state has no release root", r.App, r.Version)
	}
	return d, nil
}

// running builds the driver.Running for version of app in d.
func (d Data) running(app, version string, pid int) driver.Running {
	raw, _ := json.Marshal(d) // a struct of strings: cannot fail
	r := driver.Running{App: app, Version: version, Dir: d.Root, Data: raw}
	if pid > 0 {
		r.PIDs = []int{pid}
	}
	return r
}

// script returns the start script of d's root.
func (drv *Driver) script(d Data) script {
	env := slices.Clone(drv.opts.Environ)
	for k, v := range d.Env {
		env = append(env, k+"="+v)
	}
	// run_erl's pipes and logs stay inside the root, not in /tmp.
	env = append(env, "PIPE_DIR="+filepath.Join(d.Root, "pipes")+"/",
		"RUNNER_LOG_DIR="+filepath.Join(d.Root, "log"))
	return script{root: d.Root, rel: d.Release, env: env, timeout: drv.opts.ScriptTimeout, log: drv.log}
}

// releaseName returns the relx release name of m: the app, or <rel> when
// command is ["bin/<rel>"].
func releaseName(m release.Manifest) (string, error) {
	switch len(m.Command) {
	case 0:
		return m.App, nil
	case 1:
		// A name, not a path: bin/<rel> is the start script of the root the
		// driver unpacks, and the fleet repo's node variables may not make
		// it anything else ("bin/..", "bin/../../x").
		if rel, ok := strings.CutPrefix(m.Command[0], "bin/"); ok && rel != "" && !strings.ContainsAny(rel, "/\\\x00") && rel != "." && rel != ".." {
			return rel, nil
		}
	}
	return "", fmt.Errorf("otp driver: %s: command %q: want none, or [\"bin/<release>\"]", m.String(), m.Command)
}

// tarball returns the relx tarball of next, checking that it exists.
func tarball(next driver.Release, rel string) (string, error) {
	p := filepath.Join(next.Dir, rel+"-"+next.Version+".tar.gz")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("otp driver: %s %s: relx tarball: %w", next.App, next.Version, err)
	}
	return p, nil
}

// Adopt takes back a VM left running by a previous agent process. A VM that
// is down is started again on its permanent release. A VM left in the
// middle of a switch (another version installed, its health never
// confirmed) goes back to r's version, in the running VM when a relup
// allows it.
func (drv *Driver) Adopt(ctx context.Context, r driver.Running) error {
	d, err := DataOf(r)
	if err != nil {
		return err
	}
	s := drv.script(d)
	if !s.alive(ctx) {
		drv.log.Warn("VM is down, starting it", "app", r.App, "version", r.Version, "root", d.Root)
		if _, err := drv.start(ctx, s); err != nil {
			return fmt.Errorf("adopt %s %s: start: %w", r.App, r.Version, err)
		}
	}
	rs, err := s.releases(ctx)
	if err != nil {
		return fmt.Errorf("adopt %s %s: %w", r.App, r.Version, err)
	}
	v := running(rs)
	if v == r.Version {
		return nil
	}
	if status(rs, r.Version) == "" {
		return fmt.Errorf("adopt %s %s: the VM runs %s and does not know %s", r.App, r.Version, v, r.Version)
	}
	drv.log.Warn("VM left in the middle of a switch, going back", "app", r.App, "runs", v, "to", r.Version)
	pid, _ := s.pid(ctx)
	if _, _, err := drv.restore(ctx, r, d, v, pid); err != nil {
		return fmt.Errorf("adopt %s %s: the VM ran %s: %w", r.App, r.Version, v, err)
	}
	return nil
}

// Stop stops the VM (bin/<rel> stop). Stopping a VM that is down is not an
// error. The release root stays, so Adopt can start it again.
func (drv *Driver) Stop(ctx context.Context, r driver.Running) error {
	d, err := DataOf(r)
	if err != nil {
		return err
	}
	if err := drv.script(d).stop(ctx); err != nil {
		return fmt.Errorf("stop %s %s: %w", r.App, r.Version, err)
	}
	return nil
}

// Releases returns release_handler:which_releases/0 of r's VM: each
// release's version and status, what runs first.
func (drv *Driver) Releases(ctx context.Context, r driver.Running) ([]ReleaseState, error) {
	d, err := DataOf(r)
	if err != nil {
		return nil, err
	}
	rs, err := drv.script(d).releases(ctx)
	if err != nil {
		return nil, fmt.Errorf("releases of %s: %w", r.App, err)
	}
	return rs, nil
}
