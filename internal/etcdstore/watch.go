package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch calls wake once when it starts and then whenever a rollout record
// or a lease changes, until ctx is done (then it returns nil): the agent's
// shared-state watch (agent.Watcher), so that a node waiting for its wave
// learns within milliseconds that the wave is done or a slot is free.
// Node reports do not wake it, nor lease renewals (they change often and
// decide nothing a waiting node acts on: a holder going silent shows by
// time, which the coordinator's poll covers); a slot taken, freed or
// handed to another holder does, unless Focus said lease changes of that
// app do not matter now. A node_done event wakes no one: the node that
// records it goes on to record its wave done when it completes it, and
// waking every node of the fleet for each of them made a 1,000-node
// rollout CPU-bound (docs/scale.md). A broken watch (a member lost, a
// compaction) is opened again after a second, with a wake: a full re-read.
func (s *Store) Watch(ctx context.Context, wake func()) error {
	for {
		wake()
		s.watchOnce(ctx, wake)
		select {
		case <-ctx.Done():
			return nil
		case <-s.opts.Clock.After(time.Second):
		}
	}
}

// PushesChanges marks the store as one whose Watch reports changes as they
// happen (rollout.Options.ActivePoll then only bounds timers).
func (s *Store) PushesChanges() bool { return true }

// watchOnce follows records and leases until either watch breaks or ctx ends.
func (s *Store) watchOnce(ctx context.Context, wake func()) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	records := s.cli.Watch(wctx, s.opts.Prefix+"rollouts/", clientv3.WithPrefix())
	leases := s.cli.Watch(wctx, s.leasePrefix(), clientv3.WithPrefix(), clientv3.WithPrevKV())
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return
		case resp, ok = <-records:
		case resp, ok = <-leases:
		}
		if !ok || resp.Err() != nil || resp.Canceled {
			return
		}
		if slices.ContainsFunc(resp.Events, s.wakes) {
			wake()
		}
	}
}

// Focus implements rollout.Focuser: with leases false, lease changes of
// app do not wake Watch until Focus says otherwise.
func (s *Store) Focus(app string, leases bool) {
	s.focusMu.Lock()
	defer s.focusMu.Unlock()
	if leases {
		delete(s.unfocused, app)
		return
	}
	s.unfocused[app] = true
}

// wakes reports whether a watch event can change what this node does.
func (s *Store) wakes(ev *clientv3.Event) bool {
	key := string(ev.Kv.Key)
	if app, ok := strings.CutPrefix(key, s.leasePrefix()); ok {
		app, _, _ = strings.Cut(app, "/")
		s.focusMu.Lock()
		unfocused := s.unfocused[app]
		s.focusMu.Unlock()
		return !unfocused && moves(ev)
	}
	// A record event, as the store writes it (compact JSON: a quote inside
	// a string value is escaped, so this cannot match inside one).
	return ev.Type != clientv3.EventTypePut || !bytes.Contains(ev.Kv.Value, []byte(`"type":"node_done"`))
}

// moves reports whether an event is more than a lease renewal: a record
// event, a new or deleted key, or a lease whose holding changed.
func moves(ev *clientv3.Event) bool {
	if ev.PrevKv == nil || ev.Type != clientv3.EventTypePut {
		return true
	}
	var was, is leaseDoc
	if json.Unmarshal(ev.PrevKv.Value, &was) != nil || json.Unmarshal(ev.Kv.Value, &is) != nil {
		return true
	}
	return was.Holder != is.Holder || was.Rollout != is.Rollout || !was.Acquired.Equal(is.Acquired)
}
