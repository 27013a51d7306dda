package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
	"github.com/fleetops/reconciler/spec"
)

// Desired is the tracked branch of the fleet repo (*fleetrepo.Desired).
type Desired interface {
	// Fetch returns the tip to apply. With an error it may still return the
	// last accepted tip, which the agent keeps applying.
	Fetch(ctx context.Context) (plumbing.Hash, error)
	// View gives access to the fetched objects.
	View(fn func(*git.Repository) error) error
	// Watch calls wake whenever the branch may have moved, until ctx ends.
	Watch(ctx context.Context, wake func()) error
}

// Watcher calls wake whenever what it watches may have moved, until ctx ends.
type Watcher interface {
	Watch(ctx context.Context, wake func()) error
}

// Reporter publishes node reports (*fleetrepo.Shared).
type Reporter interface {
	WriteReport(ctx context.Context, r reconciler.NodeReport) error
}

// Installer fetches, verifies and unpacks a release into dest (which does
// not exist yet), returning its manifest.
type Installer interface {
	Install(ctx context.Context, src release.Source, want release.Want, dest string) (*release.Manifest, error)
}

// VerifiedInstaller installs with a release.Fetcher, trusting only Keys.
type VerifiedInstaller struct {
	Fetcher *release.Fetcher
	Keys    *signing.KeySet
}

// Install implements Installer.
func (v VerifiedInstaller) Install(ctx context.Context, src release.Source, want release.Want, dest string) (*release.Manifest, error) {
	return v.Fetcher.Install(ctx, src, v.Keys, want, dest)
}

// Config configures an agent. Zero values take the defaults in comments.
type Config struct {
	Node   string            // this node's name (required)
	Labels map[string]string // this node's labels; they win over the spec's declaration
	// Vars are per-node variables (--var); they win over the spec's
	// nodes.<name>.vars.
	Vars     map[string]string
	StateDir string // local state, releases and workload logs (required)
	// State is the local state in StateDir, when the caller opened it
	// already (to give drivers its RecordRunning); nil: New opens it.
	State *state.Store

	Desired   Desired   // required
	Installer Installer // required
	Reporter  Reporter  // nil: reports are only served on /healthz
	// SharedWatch wakes the agent when the shared state (leases, rollout
	// records, reports) moves; nil: only the tracked branch and Poll do.
	SharedWatch Watcher
	// Drivers by release.json "driver"; "" means "process". Required.
	Drivers map[string]driver.Driver
	// Decider says which version to run now (default: SpecDecider).
	Decider Decider
	SpecDir string // directory of the specs in the fleet repo (default: root)

	Poll          time.Duration // re-evaluation period besides watch events (default 30s)
	HealthTimeout time.Duration // bound on one health check with its retries (default 2m)
	Listen        string        // address of /healthz and /metrics ("": none)
	Once          bool          // Run makes one pass: nil when converged, ErrNotConverged otherwise

	AgentVersion string
	Logger       *slog.Logger         // default: discard
	Registry     *prometheus.Registry // default: a new one
	Now          func() time.Time     // default time.Now
}

// ErrNotConverged is Run's result in Once mode when the node did not reach
// the decided versions, healthy.
var ErrNotConverged = errors.New("node not converged")

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	for _, req := range []struct {
		ok   bool
		name string
	}{{c.Node != "", "Node"}, {c.StateDir != "", "StateDir"}, {c.Desired != nil, "Desired"},
		{c.Installer != nil, "Installer"}, {len(c.Drivers) > 0, "Drivers"}} {
		if !req.ok {
			errs = append(errs, fmt.Errorf("agent config: %s is required", req.name))
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Decider == nil {
		c.Decider = SpecDecider{}
	}
	if c.Poll <= 0 {
		c.Poll = 30 * time.Second
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Decider says which version of an app this node should run now. It is the
// seam for fleet coordination: the default runs the spec's version at once;
// a rollout engine answers "wait" until this node's wave opens and it holds
// a lease.
type Decider interface {
	Decide(ctx context.Context, in DecideInput) (Decision, error)
}

// DecideInput is what a Decider sees for one app.
type DecideInput struct {
	Node   string
	Commit plumbing.Hash // the spec commit being applied
	Fleet  *spec.Fleet   // shared between passes: read-only
	App    spec.App
	Local  Local // what this node runs
	// Rollback is set when Commit is a rollback of App (its trailers, or a
	// git revert of an upgrade): the rollout it starts applies at once.
	Rollback *reconciler.RollbackMark
}

// Local is an app's state on this node.
type Local struct {
	Active   string // running version, "" when none
	Previous string
	Failed   string // a version whose switch failed here, not retried
}

// Decision is a Decider's answer.
type Decision struct {
	// Version to run now; "" keeps what runs.
	Version string
	// Waiting, when Version is "", says why the node waits (state
	// "waiting", target App.Version).
	Waiting string
	// Rollout and Lease are copied into the app's report.
	Rollout, Lease string
	// Recheck asks for another pass no later than this time (a wave that
	// opens after batchDelay, a canary monitor); zero: on the next change.
	Recheck time.Time
	// Done, when set, is called with the outcome of converging to Version
	// (the coordinator records it and releases its lease).
	Done func(ctx context.Context, rep reconciler.AppReport, err error)
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, in DecideInput) (Decision, error)

// Decide implements Decider.
func (f DeciderFunc) Decide(ctx context.Context, in DecideInput) (Decision, error) { return f(ctx, in) }

// SpecDecider runs the spec's version now, unless the app is paused (a
// paused app that runs nothing yet is still installed).
type SpecDecider struct{}

// Decide implements Decider.
func (SpecDecider) Decide(_ context.Context, in DecideInput) (Decision, error) {
	if in.App.Paused && in.Local.Active != "" {
		return Decision{Waiting: "app is paused"}, nil
	}
	return Decision{Version: in.App.Version}, nil
}
