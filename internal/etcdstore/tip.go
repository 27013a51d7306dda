package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TipHint is the tip key of one tracked branch, <prefix>tips/<branch>: the
// commit id of the branch's tip as the last agent to read it from Git
// published it (agent.TipHint). Agents watch it and read the branch from
// Git at once when it moves, so a push reaches the fleet within
// milliseconds of the first agent seeing it while every agent polls Git
// rarely. It is a hint, never trusted: it only wakes a read of Git.
type TipHint struct {
	s          *Store
	key        string
	objectsKey string // <prefix>tipobjects/<branch>
}

// TipHint returns the tip key of branch (e.g. "main").
func (s *Store) TipHint(branch string) *TipHint {
	return &TipHint{s: s, key: s.opts.Prefix + "tips/" + branch, objectsKey: s.opts.Prefix + "tipobjects/" + branch}
}

// tipObjects is the value of the objects key: a packfile of the objects
// that lead from commit Base to commit Commit.
type tipObjects struct {
	Commit string `json:"commit"`
	Base   string `json:"base"`
	Pack   []byte `json:"pack"`
}

// PublishTipObjects puts at <prefix>tipobjects/<branch> the packfile of the
// objects that lead from base to commit (fleetrepo.(*Desired).Pack), before
// the tip key names commit, so that the agents it wakes find them. Only the
// newest commit's pack is kept.
func (h *TipHint) PublishTipObjects(ctx context.Context, commit, base string, pack []byte) error {
	data, err := json.Marshal(tipObjects{Commit: commit, Base: base, Pack: pack})
	if err != nil {
		return fmt.Errorf("encode the objects of %.12s: %w", commit, err)
	}
	ctx, cancel := h.s.op(ctx)
	defer cancel()
	if _, err := h.s.cli.Put(ctx, h.objectsKey, string(data)); err != nil {
		return h.s.classify(fmt.Sprintf("publish the objects of %.12s to %s in", commit, h.objectsKey), err)
	}
	return nil
}

// TipObjects returns the published base and pack for commit; a nil pack
// when none is published for it. What it returns is untrusted:
// fleetrepo.(*Desired).Import names objects by their content and imports
// only a whole tip.
func (h *TipHint) TipObjects(ctx context.Context, commit string) (base string, pack []byte, err error) {
	ctx, cancel := h.s.op(ctx)
	defer cancel()
	resp, err := h.s.cli.Get(ctx, h.objectsKey)
	if err != nil {
		return "", nil, h.s.classify("read "+h.objectsKey+" from", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil, nil
	}
	var v tipObjects
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return "", nil, fmt.Errorf("read %s: %w", h.objectsKey, err)
	}
	if v.Commit != commit {
		return "", nil, nil
	}
	return v.Base, v.Pack, nil
}

// Key is the etcd key of the hint.
func (h *TipHint) Key() string { return h.key }

// PublishTip sets the key to commit unless it holds it already (one
// transaction: the first of many agents that read the same tip writes it,
// the others change nothing, and their watchers do not wake).
func (h *TipHint) PublishTip(ctx context.Context, commit string) error {
	ctx, cancel := h.s.op(ctx)
	defer cancel()
	_, err := h.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(h.key), "=", commit)).
		Else(clientv3.OpPut(h.key, commit)).
		Commit()
	if err != nil {
		return h.s.classify(fmt.Sprintf("publish tip %.12s to %s in", commit, h.key), err)
	}
	return nil
}

// WatchTip calls wake with the key's value when it starts (if it is set)
// and at every change, until ctx ends (then it returns nil). A broken watch
// is opened again after a second, from a fresh read.
func (h *TipHint) WatchTip(ctx context.Context, wake func(commit string)) error {
	for {
		h.watchOnce(ctx, wake)
		select {
		case <-ctx.Done():
			return nil
		case <-h.s.opts.Clock.After(time.Second):
		}
	}
}

func (h *TipHint) watchOnce(ctx context.Context, wake func(string)) {
	gctx, cancel := h.s.op(ctx)
	resp, err := h.s.cli.Get(gctx, h.key)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			h.s.opts.Logger.Debug("read the tip key; retrying", "key", h.key, "err", h.s.classify("read", err))
		}
		return
	}
	if len(resp.Kvs) > 0 {
		wake(string(resp.Kvs[0].Value))
	}
	wctx, wcancel := context.WithCancel(h.s.watchContext(ctx))
	defer wcancel()
	for w := range h.s.cli.Watch(wctx, h.key, clientv3.WithRev(resp.Header.Revision+1)) {
		if w.Err() != nil || w.Canceled {
			return
		}
		for _, ev := range w.Events {
			if ev.Type == clientv3.EventTypePut {
				wake(string(ev.Kv.Value))
			}
		}
	}
}
