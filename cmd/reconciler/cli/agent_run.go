package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/agent/driver"
	execdriver "github.com/fleetops/reconciler/agent/driver/exec"
	"github.com/fleetops/reconciler/agent/driver/otp"
	"github.com/fleetops/reconciler/agent/driver/process"
	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

// runAgent wires the agent from the flags and runs it.
func runAgent(ctx context.Context, e *env, o *agentOptions) error {
	// Every line of this agent names its node, once (package logging).
	log := newLogger(e, o.logFormat).With("node", o.node)
	vars, _ := parseVars(o.vars) // checked by validate
	keys, err := signing.LoadKeySet(o.trustKeys...)
	if err != nil {
		return fmt.Errorf("agent %s: trusted keys: %w", o.node, err)
	}
	// One agent per state directory: a second one would adopt (or, under
	// another node name, stop) the first one's workloads.
	lock, err := state.Acquire(o.stateDir)
	if err != nil {
		return fmt.Errorf("agent %s: %w", o.node, err)
	}
	defer lock.Release()
	st, err := state.Open(o.stateDir)
	if err != nil {
		return fmt.Errorf("agent %s: %w", o.node, err)
	}
	fetcher, err := release.NewFetcher(release.Options{CacheDir: filepath.Join(o.stateDir, "cache"),
		Timeout: o.fetchTimeout, StallTimeout: o.fetchStall})
	if err != nil {
		return fmt.Errorf("agent %s: %w", o.node, err)
	}
	tr, err := agentTrust(e, o, log)
	if err != nil {
		return err
	}
	desired, shared, err := openRepos(ctx, e, o, log, tr)
	if err != nil {
		return err
	}
	if c, ok := shared.(io.Closer); ok {
		defer c.Close() // etcd: stops renewing this node's liveness
	}
	appender, outbox, stopNotify, err := startNotify(ctx, o, shared, log)
	if err != nil {
		return err
	}
	defer stopNotify()
	coord, err := newCoordinator(o, desired, appender, log)
	if err != nil {
		return err
	}
	drivers, closeDrivers, err := newDrivers(o, st, log)
	if err != nil {
		return err
	}
	defer closeDrivers()
	wakers, err := webhookWakers(o, log)
	if err != nil {
		return err
	}
	for _, w := range wakers {
		if c, ok := w.(io.Closer); ok {
			defer c.Close() // the listener, when the agent never watched it
		}
	}
	reg := prometheus.NewRegistry()
	if outbox != nil {
		reg.MustRegister(notifyPendingGauge(outbox))
	}
	reg.MustRegister(badRefsGauge(shared), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := agent.Config{
		Node: o.node, Labels: o.labels, Vars: vars, StateDir: o.stateDir, State: st,
		Desired: desired, Installer: agent.VerifiedInstaller{Fetcher: fetcher, Keys: keys}, Reporter: shared,
		SharedWatch: shared, Wakers: wakers, Coordinator: coord, SwitchAbort: o.switchAbort, Drivers: drivers, SpecDir: o.dir, SpecLoader: o.specLoader(), Poll: o.poll, Listen: o.listen, Once: o.once, Logger: log,
		AgentVersion: buildOf().Version, Registry: reg,
	}
	if st, ok := shared.(*etcdstore.Store); ok {
		// The tip key: a push reaches every agent as soon as one has read
		// it from Git (docs/shared-state.md, "The tip key").
		cfg.TipHint = st.TipHint(o.branch)
	}
	log.Info("agent starting", "version", buildOf().String(), "repo", o.repo, "branch", o.branch, "state", o.stateDir, "keys", keys.IDs())
	a, err := agent.New(cfg)
	if err != nil {
		return fmt.Errorf("agent %s: %w", o.node, err)
	}
	err = a.Run(ctx)
	if o.output == "json" {
		if jerr := writeJSON(e, a.Health()); jerr != nil {
			return jerr
		}
	}
	if errors.Is(err, agent.ErrNotConverged) {
		fmt.Fprintf(e.stderr, "reconciler: agent %s: not converged (see the log above and /healthz)\n", o.node)
		return &exitError{code: exitFailure}
	}
	return err
}

// openRepos opens the tracked branch and the shared state (reports).
func openRepos(ctx context.Context, e *env, o *agentOptions, log *slog.Logger, tr trustOptions) (*fleetrepo.Desired, sharedState, error) {
	auth, err := fleetrepo.AuthFromEnv(o.repo, e.getenv)
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	id := fleetrepo.Identity{Name: o.node}
	// PollInterval -1: the agent reads the branch at every --poll itself
	// (one ref listing), and fsnotify still watches a local repository.
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: o.repo, Branch: o.branch, Auth: auth,
		CacheDir: filepath.Join(o.stateDir, "git", "desired"), Identity: id, Logger: log, PollInterval: -1,
		Verifier: tr.verifier, Signer: tr.signer})
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	instance, err := agentInstance(o.stateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	shared, err := o.openSharedAs(ctx, e, o.repo, auth, o.node, instance, filepath.Join(o.stateDir, "git", "shared"), log)
	var usage *usageError
	if errors.As(err, &usage) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	return desired, shared, nil
}

// newCoordinator picks how this node decides when to switch: with the fleet
// (waves under leases, rollback commits) or alone (the spec's version at once).
func newCoordinator(o *agentOptions, desired *fleetrepo.Desired, shared sharedState, log *slog.Logger) (agent.Coordinator, error) {
	if o.coordination == "none" {
		return agent.SpecCoordinator{}, nil
	}
	var startJitter time.Duration // the default: spread a fleet's start of a rollout
	if o.once {
		startJitter = -1 // one pass: a jittered start would always end it unconverged
	}
	c, err := rollout.New(rollout.Options{Node: o.node, Shared: shared, LeaseTTL: o.leaseTTL, Logger: log,
		StartJitter: startJitter, Rollback: rollbackCommitter(desired, o.node),
		Descends: func(tip, ancestor string) bool {
			return desired.Descends(plumbing.NewHash(tip), plumbing.NewHash(ancestor))
		},
		Approvals: desired.Approvals})
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	return c, nil
}

// newDrivers builds the process, exec and otp drivers; the process driver
// reports what runs into the local state.
func newDrivers(o *agentOptions, st *state.Store, log *slog.Logger) (map[string]driver.Driver, func(), error) {
	proc, err := process.New(process.Options{Logger: log, LogDir: filepath.Join(o.stateDir, "logs"),
		SocketDirs: append([]string{filepath.Join(o.stateDir, "sockets")}, o.socketDirs...),
		OnChange: func(r driver.Running) {
			if err := st.RecordRunning(r); err != nil {
				log.Error("record running workload", "app", r.App, "err", err)
			}
		}})
	if err != nil {
		return nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	otpDrv, err := otp.New(otp.Options{Dir: filepath.Join(o.stateDir, "otp"), Logger: log})
	if err != nil {
		proc.Close()
		return nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	drivers := map[string]driver.Driver{
		"process": proc,
		"exec":    execdriver.New(execdriver.Options{Logger: log}),
		"otp":     otpDrv,
	}
	return drivers, func() { proc.Close() }, nil
}

// badRefsGauge counts the shared refs the agent's reads skip as unreadable
// (garbage node reports, leases, record events: fleetrepo.BadRef); `status`
// names them.
func badRefsGauge(sh sharedState) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reconciler_shared_bad_refs",
		Help: "Shared-state refs skipped as unreadable (see reconciler status).",
	}, func() float64 { return float64(len(sh.BadRefs())) })
}

// agentInstance is this state directory's agent instance id, made once:
// the Reconciler-Instance of its reports. Kept across restarts, it lets an
// agent tell its own earlier reports from another agent's that uses the
// same node name (the state directory is locked: one agent per directory).
func agentInstance(stateDir string) (string, error) {
	path := filepath.Join(stateDir, "instance")
	b, err := os.ReadFile(path)
	if id := strings.TrimSpace(string(b)); err == nil && id != "" {
		return id, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read agent instance id: %w", err)
	}
	id := rand.Text()[:16]
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write agent instance id in %s: %w", stateDir, err)
	}
	return id, nil
}
