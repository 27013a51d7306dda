package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
)

// startNodes opens every node's stores and starts its agent.
func (h *harness) startNodes(ctx context.Context) error {
	ctx, h.cancel = context.WithCancel(ctx)
	for i := range h.opt.Nodes {
		name := fmt.Sprintf("n%05d", i)
		cfg, err := h.node(ctx, name)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		hook, err := h.hook(i)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		if hook != nil {
			cfg.Wakers = append(cfg.Wakers, hook)
		}
		a, err := agent.New(cfg)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		h.wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				h.errMu.Lock()
				h.errs = append(h.errs, fmt.Errorf("agent %s: %w", name, err))
				h.errMu.Unlock()
			}
		})
	}
	return nil
}

// sharedState is what a node's shared-state handle is to the agent and
// the coordinator.
type sharedState interface {
	rollout.Shared
	agent.Reporter
	agent.Watcher
}

// node wires one simulated node: its own Desired, shared-state handle and
// coordinator; the shared spec cache and (etcd) connection.
func (h *harness) node(ctx context.Context, name string) (agent.Config, error) {
	log := h.opt.Logger.With("node", name) // the stores' (agent and coordinator add it themselves)
	// As the agent command does: no watch poll of the branch beside the
	// agent's own --poll (PollInterval -1) unless -git-poll asks for one.
	branchPoll := h.opt.GitPoll
	if branchPoll == 0 {
		branchPoll = -1
	}
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: h.git.url, Identity: fleetrepo.Identity{Name: name},
		PollInterval: branchPoll, Logger: log, Clock: h.clock})
	if err != nil {
		return agent.Config{}, err
	}
	shared, err := h.openShared(ctx, name, log)
	if err != nil {
		return agent.Config{}, err
	}
	coord, err := rollout.New(rollout.Options{Node: name, Shared: shared, ActivePoll: h.opt.ActivePoll, LeaseTTL: h.opt.LeaseTTL, Logger: h.opt.Logger, Clock: h.clock,
		Rollback: func(ctx context.Context, req fleetrepo.RollbackRequest) (string, error) {
			req.Author = fleetrepo.Identity{Name: name}
			c, err := desired.Rollback(ctx, req)
			if errors.Is(err, fleetrepo.ErrAlreadyRolledBack) || errors.Is(err, fleetrepo.ErrSuperseded) {
				return "", errors.Join(rollout.ErrNoRollback, err)
			}
			return c.String(), err
		},
		Descends: func(tip, ancestor string) bool {
			return desired.Descends(plumbing.NewHash(tip), plumbing.NewHash(ancestor))
		}})
	if err != nil {
		return agent.Config{}, err
	}
	drv := &simDriver{node: name, took: h.opt.Switch, log: h.log, clock: h.clock}
	cfg := agent.Config{
		Node: name, StateDir: filepath.Join(h.opt.Dir, "nodes", name),
		Desired: seeing{Desired: desired, node: name, log: h.log}, Reporter: shared, SharedWatch: shared,
		Installer:   simInstaller{took: h.opt.Install, clock: h.clock},
		Drivers:     map[string]driver.Driver{"process": drv}, // the manifests name no driver: "process"
		Coordinator: coord, SpecLoader: h.specs, Poll: h.opt.Poll, Logger: h.opt.Logger, Clock: h.clock,
	}
	if st, ok := shared.(*etcdstore.Store); ok {
		cfg.TipHint = st.TipHint("main") // the tip key, as the agent command sets it
	}
	return cfg, nil
}

func (h *harness) openShared(ctx context.Context, name string, log *slog.Logger) (sharedState, error) {
	if h.opt.Store == StoreEtcd {
		s, err := etcdstore.Open(etcdstore.Options{Endpoints: h.etcd.endpoints, Client: h.etcd.pick(),
			Identity: name, Logger: log, Clock: h.clock, Decoded: h.decoded, LivenessTTL: h.opt.LivenessTTL})
		if err != nil {
			return nil, err
		}
		h.closers = append(h.closers, s)
		return s, nil
	}
	return fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: h.git.url, Identity: fleetrepo.Identity{Name: name},
		PollInterval: h.opt.GitPoll, Logger: log, Clock: h.clock})
}

// openReader opens the harness's own handle on the shared state, to read
// the rollout record: every 5 s while the nodes converge (counted in the
// load, about 0.2-0.4 requests/s), and until the outcome is written.
func (h *harness) openReader(ctx context.Context) (rollout.Shared, error) {
	if h.opt.Store == StoreEtcd {
		s, err := etcdstore.Open(etcdstore.Options{Endpoints: h.etcd.endpoints, Client: h.etcd.clients[0], Identity: "scale"})
		if err != nil {
			return nil, err
		}
		h.closers = append(h.closers, s)
		return s, nil
	}
	return fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: h.git.url, Identity: fleetrepo.Identity{Name: "scale"}})
}
