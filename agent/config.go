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
	"github.com/fleetops/reconciler/internal/clock"
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

// SpecLoader evaluates a commit's spec files (name -> content) into a
// fleet, or says why not as spec.LoadFiles does: *spec.Errors for problems
// in the files, an error wrapping spec.ErrLimit for a spec over a limit.
// Either is a verdict on the commit, kept until the tip moves.
type SpecLoader interface {
	LoadSpec(ctx context.Context, files map[string][]byte) (*spec.Fleet, error)
}

// InProcess is the SpecLoader that evaluates in this process, with
// spec.LoadFiles: no bound on CUE's time or memory (docs/spec.md, "Limits").
type InProcess struct{}

// LoadSpec implements SpecLoader.
func (InProcess) LoadSpec(_ context.Context, files map[string][]byte) (*spec.Fleet, error) {
	return spec.LoadFiles(files)
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
	// TipHint, when set, is a shared hint of the tracked branch's tip (the
	// etcd store's tip key): the agent publishes each new tip it reads and
	// reads the branch at once when the hint moves; never trusted.
	TipHint TipHint
	// Wakers wake the agent to read the tracked branch at once (the push
	// webhook receiver, internal/webhook): each wake is one read of the
	// branch, whose answer (not the wake's) is what applies.
	Wakers []Watcher
	// Drivers by release.json "driver"; "" means "process". Required.
	Drivers map[string]driver.Driver
	// Coordinator says which version to run now, under which lease
	// (default: SpecCoordinator).
	Coordinator Coordinator
	// SwitchAbort bounds how long giving a candidate up and keeping the old
	// version takes (default 5s): a switch begins only under a lease valid
	// for longer, and is abandoned when its validity less this runs out.
	SwitchAbort time.Duration
	SpecDir     string // directory of the specs in the fleet repo (default: root)
	// SpecLoader evaluates the spec files of a new tip (default: InProcess).
	// The reconciler agent command passes a spec/isolate.Loader, which
	// bounds the evaluation's time and memory in a child process.
	SpecLoader SpecLoader

	// Poll is the re-evaluation period besides watch events (default 30s),
	// and how often the tracked branch is read from the repository when no
	// watch says it moved: give the agent a Desired that does not poll on
	// its own (fleetrepo.DesiredOptions.PollInterval < 0), as the agent
	// command does, or the repository is asked twice.
	Poll          time.Duration
	HealthTimeout time.Duration // bound on one health check with its retries (default 2m)
	Listen        string        // address of /healthz and /metrics ("": none)
	Once          bool          // Run makes one pass: nil when converged, ErrNotConverged otherwise

	AgentVersion string
	Logger       *slog.Logger         // default: discard
	Registry     *prometheus.Registry // default: a new one
	// Clock every decision, timer and timestamp reads (default the system
	// clock; tests and internal/fleetsim pass a *clock.Fake).
	Clock clock.Clock
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
	if c.Coordinator == nil {
		c.Coordinator = SpecCoordinator{}
	}
	if c.SpecLoader == nil {
		c.SpecLoader = InProcess{}
	}
	if c.Poll <= 0 {
		c.Poll = 30 * time.Second
	}
	if c.SwitchAbort <= 0 {
		c.SwitchAbort = 5 * time.Second
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
	c.Clock = clock.Or(c.Clock)
	return c
}

// Coordinator says which version of an app this node may run now, and
// under which lease. It is the seam for fleet coordination: the default
// (SpecCoordinator) permits the spec's version at once; the rollout
// coordinator (agent/rollout) answers "wait" until this node's wave opens
// and it holds a lease, and it may write to the shared state to get there.
type Coordinator interface {
	Permit(ctx context.Context, in DecideInput) (Permit, error)
}

// DecideInput is what a Coordinator sees for one app.
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
	// Watching: Active's metric gates are still to be watched after its
	// switch (an agent restarted during the watch); it does not count yet.
	Watching bool
}

// Permit is a Coordinator's answer for one app.
type Permit struct {
	// Version to run now; "" keeps what runs.
	Version string
	// Waiting, when Version is "", says why the node waits (state
	// "waiting", target App.Version).
	Waiting string
	// Blocked, when Version is "", says why nothing can move until a person
	// acts (state "blocked": a refused push, refused credentials).
	Blocked string
	// Rollout is copied into the app's report.
	Rollout string
	// Recheck asks for another pass no later than this time (a wave that
	// opens after batchDelay, a canary monitor); zero: on the next change.
	Recheck time.Time
	// Fetch asks the agent to read the tracked branch again before its next
	// pass: this node wrote a commit to it (a rollback commit).
	Fetch bool
	// Monitor says the node runs Version as a canary under its monitor:
	// its steady probes also ask the app's metric gates.
	Monitor bool
	// Lease, when set, guards the switch to Version: Converge calls Begin
	// right before the old version starts going away, and the agent calls
	// Finish with the outcome, once, whatever happened.
	Lease Lease
}

// Lease is the right to switch one app on this node, as a Permit carries
// it. It owns whatever keeps it alive (the rollout coordinator renews it in
// the background) until Finish.
type Lease interface {
	// Token is the lease's fencing token, for the report ("" for none).
	Token() string
	// Begin is called before the point of no return (the driver's switch).
	// abort is how long the caller needs to give the candidate up and keep
	// the old version. Begin returns an error wrapping ErrNotBegun when the
	// lease is lost or its validity cannot cover that (do not switch; keep
	// the old version: it did not fail); else a context the switch must run
	// under, cancelled once the lease's validity, less abort, runs out.
	Begin(ctx context.Context, abort time.Duration) (context.Context, error)
	// Finish records the outcome of converging to the Permit's version and
	// ends the lease. An error from Begin comes back here too.
	Finish(ctx context.Context, rep reconciler.AppReport, err error)
}

// ErrNotBegun wraps Begin's refusals: the switch was not started.
var ErrNotBegun = errors.New("switch not begun")

// CoordinatorFunc adapts a function to Coordinator.
type CoordinatorFunc func(ctx context.Context, in DecideInput) (Permit, error)

// Permit implements Coordinator.
func (f CoordinatorFunc) Permit(ctx context.Context, in DecideInput) (Permit, error) {
	return f(ctx, in)
}

// SpecCoordinator permits the spec's version now, unless the app is paused
// (a paused app that runs nothing yet is still installed).
type SpecCoordinator struct{}

// Permit implements Coordinator.
func (SpecCoordinator) Permit(_ context.Context, in DecideInput) (Permit, error) {
	if in.App.Paused && in.Local.Active != "" {
		return Permit{Waiting: "app is paused"}, nil
	}
	return Permit{Version: in.App.Version}, nil
}
