package agent

import (
	"context"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// TipHint is a shared hint of the tracked branch's tip (the etcd store's
// tip key, docs/shared-state.md): whichever agent first reads a new tip
// from Git publishes it, and every agent watching the hint reads the branch
// from Git at once when it moves. So agents react to a push within
// milliseconds while polling Git rarely. The hint is never trusted: it only
// wakes a read of the branch, and what that read returns (checked to descend
// from the accepted tip, and against the trusted signers) is what applies.
type TipHint interface {
	// WatchTip calls wake with the hinted commit whenever it changes (and
	// once when it starts, when there is one), until ctx ends.
	WatchTip(ctx context.Context, wake func(commit string)) error
	// PublishTip sets the hint to commit unless it says that already.
	PublishTip(ctx context.Context, commit string) error
}

// tipHintState is what the agent knows of the hint: the last hinted commit
// (written by the watch) and the tip it last read from Git (by the loop).
type tipHintState struct {
	mu     sync.Mutex
	hinted string
	have   string
}

// watchTipHint wakes branch whenever the hint names a commit other than
// the tip this agent last read.
func (a *Agent) watchTipHint(ctx context.Context, h TipHint, branch chan<- struct{}) {
	err := h.WatchTip(ctx, func(commit string) {
		a.tipHint.mu.Lock()
		a.tipHint.hinted = commit
		stale := commit != a.tipHint.have
		a.tipHint.mu.Unlock()
		if stale {
			select {
			case branch <- struct{}{}:
			default:
			}
		}
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("watching the tip hint failed; polling the tracked branch only", "err", err)
	}
}

// publishTip tells the other agents about a tip read from Git, when the
// hint does not name it yet (a new tip, or a hint that is wrong).
func (a *Agent) publishTip(ctx context.Context, commit plumbing.Hash) {
	h := a.cfg.TipHint
	if h == nil {
		return
	}
	c := commit.String()
	a.tipHint.mu.Lock()
	a.tipHint.have = c
	stale := a.tipHint.hinted != c
	a.tipHint.mu.Unlock()
	if !stale {
		return
	}
	if err := h.PublishTip(ctx, c); err != nil && ctx.Err() == nil {
		a.log.Warn("publish the tip hint (other agents will find the tip at their next poll)", "commit", c, "err", err)
		return
	}
	a.tipHint.mu.Lock()
	a.tipHint.hinted = c
	a.tipHint.mu.Unlock()
}
