package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/fleetops/reconciler/reconciler"
)

// Watch calls wake once when it starts and then whenever a rollout record
// or a lease changes, until ctx is done (then it returns nil): the agent's
// shared-state watch (agent.Watcher), so that a node waiting for its wave
// learns within milliseconds that the wave is done or a slot is free.
// Node reports do not wake it, nor lease renewals (they change often and
// decide nothing a waiting node acts on: a holder going silent shows by
// time, which the coordinator's poll covers); a slot taken, freed or
// handed to another holder does.
//
// Once the coordinator has said what it waits for (Focus), only what can
// change that wakes it: the leases are watched only while it waits for a
// slot of some app (from the revision of its last read of the leases, so
// that nothing written since is missed), and a node_done event wakes no
// one (the node that records it goes on to record its wave done when it
// completes it). Every lease write and every node_done sent to every
// node's watch made a 1,000-node rollout CPU-bound (docs/scale.md).
//
// Record events are followed by their apps' wake keys (wakes/<app>),
// which every append but a node_done rewrites in its transaction: a
// watcher of the records themselves received every node_done of the
// fleet, O(nodes²) in all. An event written by hand, without its wake
// key, is seen at the next poll.
//
// A broken watch (a member lost, a compaction) is opened again after a
// second, with a wake: a full re-read.
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

// watchContext is the context of this Store's watches: they require a
// leader, and they go on a gRPC stream of this Store's own. The etcd
// client puts the watches of one connection whose contexts carry the same
// metadata on one stream, served by one goroutine at each end; the scale
// harness's 10,000 Stores on one connection (Options.Client) so waited on
// each other's events, where real nodes each have their connection.
func (s *Store) watchContext(ctx context.Context) context.Context {
	return clientv3.WithRequireLeader(metadata.AppendToOutgoingContext(ctx, "reconciler-watcher", s.instance))
}

// watchOnce follows records, and leases while they matter, until a watch
// breaks or ctx ends.
func (s *Store) watchOnce(ctx context.Context, wake func()) {
	wctx, cancel := context.WithCancel(s.watchContext(ctx))
	defer cancel()
	records := s.cli.Watch(wctx, s.opts.Prefix+"wakes/", clientv3.WithPrefix())
	var leases clientv3.WatchChan // nil while no lease change matters
	stopLeases := func() {}
	defer func() { stopLeases() }()
	follow := func() {
		want, from := s.leasesMatter()
		switch {
		case want && leases == nil:
			lctx, stop := context.WithCancel(wctx)
			opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
			if from > 0 {
				opts = append(opts, clientv3.WithRev(from))
			}
			leases, stopLeases = s.cli.Watch(lctx, s.leasePrefix(), opts...), stop
		case !want && leases != nil:
			stopLeases()
			leases, stopLeases = nil, func() {}
		}
	}
	follow()
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return
		case <-s.refocus:
			follow()
			continue
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

// Focus implements rollout.Focuser: leases says whether lease changes of
// app can change what this node does (it waits for a slot). Until the first
// call every lease change wakes Watch; after it, only those of apps whose
// last Focus said so.
func (s *Store) Focus(app string, leases bool) {
	s.focusMu.Lock()
	before := s.leasesMatterLocked()
	s.focused = true
	if leases {
		s.slotWaits[app] = true
	} else {
		delete(s.slotWaits, app)
	}
	changed := before != s.leasesMatterLocked()
	s.focusMu.Unlock()
	if changed {
		select {
		case s.refocus <- struct{}{}:
		default: // one is pending: the watch reads the state afresh
		}
	}
}

// leasesMatter says whether Watch follows the leases, and from which
// revision (0: from now): the one after this Store's last read of them.
func (s *Store) leasesMatter() (bool, int64) {
	s.focusMu.Lock()
	want := s.leasesMatterLocked()
	s.focusMu.Unlock()
	if !want {
		return false, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leasesRev == 0 {
		return true, 0
	}
	return true, s.leasesRev + 1
}

func (s *Store) leasesMatterLocked() bool { return !s.focused || len(s.slotWaits) > 0 }

// wakes reports whether a watch event can change what this node does.
func (s *Store) wakes(ev *clientv3.Event) bool {
	key := string(ev.Kv.Key)
	if app, ok := strings.CutPrefix(key, s.leasePrefix()); ok {
		app, _, _ = strings.Cut(app, "/")
		s.focusMu.Lock()
		focused, matters := s.focused, !s.focused || s.slotWaits[app]
		s.focusMu.Unlock()
		if focused {
			return matters && frees(ev)
		}
		return moves(ev)
	}
	// A wake key: every record event but a node_done rewrites it.
	if ev.Type != clientv3.EventTypePut {
		return true
	}
	var w wakeDoc
	if json.Unmarshal(ev.Kv.Value, &w) != nil {
		return true // garbage written by hand: a read tells
	}
	app := strings.TrimPrefix(key, s.opts.Prefix+"wakes/")
	return w.Type != reconciler.EventNodeDone && !s.leftOut(app, w)
}

// waveFocus is a FocusWaves or a FocusEnd: the wave_done events of rollout
// with a wave below from wake no one; with endOnly, no event of rollout
// but its end does.
type waveFocus struct {
	rollout string
	from    int
	endOnly bool
}

// FocusWaves implements rollout.WaveFocuser: a node that waits for its
// wave two or more waves ahead (from is the wave before its own) is woken
// by the wave_done of that wave, not by those of the waves before it, nor
// by a verdict on another node (node_lost, node_unreachable, node_held,
// node_failed) or a pause or resume of the rollout (0: by every event of
// app). A 1,000-node rollout woke every node at each
// wave_done, and each read the record and the leases: half of its reads
// (docs/scale.md).
func (s *Store) FocusWaves(app, rollout string, from int) {
	s.focusMu.Lock()
	defer s.focusMu.Unlock()
	if from <= 0 || rollout == "" {
		delete(s.farWaves, app)
		return
	}
	s.farWaves[app] = waveFocus{rollout: rollout, from: from}
}

// FocusEnd implements rollout.EndFocuser: a node done, in a wave
// recorded done, is woken by the end of rollout (completed, failed,
// rolled_back, superseded) or another rollout, not by the node_lost,
// node_unreachable, approved or paused events of the waves still open,
// which change nothing it does (its timer covers a verdict it may come to
// judge). At 10,000 nodes each node_lost of the last wave woke the 9,000
// nodes done before it, and their reads of the record timed out the
// passes of the nodes that still had to switch (docs/scale.md). FocusWaves
// ends it.
func (s *Store) FocusEnd(app, rollout string) {
	s.focusMu.Lock()
	defer s.focusMu.Unlock()
	if rollout == "" {
		delete(s.farWaves, app)
		return
	}
	s.farWaves[app] = waveFocus{rollout: rollout, endOnly: true}
}

// leftOut reports whether the record event of app that the wake w
// announces is one FocusWaves or FocusEnd said wakes no one.
func (s *Store) leftOut(app string, w wakeDoc) bool {
	s.focusMu.Lock()
	f, ok := s.farWaves[app]
	s.focusMu.Unlock()
	switch {
	case !ok || w.Rollout != f.rollout:
		return false
	case f.endOnly:
		return !endsRollout(w.Type)
	}
	switch w.Type {
	case reconciler.EventWaveDone:
		return w.Wave < f.from
	case reconciler.EventNodeLost, reconciler.EventNodeUnreachable, reconciler.EventNodeHeld, reconciler.EventNodeFailed,
		reconciler.EventPaused, reconciler.EventResumed:
		// A verdict on another node, or a pause, leaves a node waiting
		// for a wave ahead waiting: at 10,000 nodes each node_lost of
		// the open wave woke the 5,000 nodes behind it, and their 5,000
		// reads of the record at once timed out (docs/scale.md).
		return true
	}
	return false
}

// endsRollout reports whether an event of type t gives its rollout an
// outcome.
func endsRollout(t string) bool {
	switch t {
	case reconciler.EventCompleted, reconciler.EventFailed, reconciler.EventRolledBack, reconciler.EventSuperseded:
		return true
	}
	return false
}

// frees reports whether a lease event can let a node waiting for a slot
// take one: a slot deleted, or written with no holder (a release, a break).
// An acquisition or a renewal frees none: at the opening of a wave of
// 1,000, each acquisition woke the wave's nodes still waiting, and each
// read the 1,000 slots (docs/scale.md). (A holder gone silent frees its
// slot by time: the coordinator's poll sees it.)
func frees(ev *clientv3.Event) bool {
	return ev.Type != clientv3.EventTypePut || !bytes.Contains(ev.Kv.Value, []byte(`"holder":`))
}

// moves reports whether an event is more than a lease renewal: a record
// event, a new or deleted key, or a lease whose holding changed.
func moves(ev *clientv3.Event) bool {
	if ev.PrevKv == nil || ev.Type != clientv3.EventTypePut {
		return true
	}
	// A renewal as this store writes it changes nothing before "renewed"
	// (leaseDoc's fields in order: app, slot, holder, rollout, acquired):
	// equal bytes up to there are the same holding, without decoding both
	// values at every renewal for every node waiting for a slot.
	if w, _, i := bytes.Cut(ev.PrevKv.Value, []byte(`,"renewed":`)); i {
		if n, _, j := bytes.Cut(ev.Kv.Value, []byte(`,"renewed":`)); j && bytes.Equal(w, n) {
			return false
		}
	}
	var was, is leaseDoc
	if json.Unmarshal(ev.PrevKv.Value, &was) != nil || json.Unmarshal(ev.Kv.Value, &is) != nil {
		return true
	}
	return was.Holder != is.Holder || was.Rollout != is.Rollout || !was.Acquired.Equal(is.Acquired)
}
