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

// TipObjects is an optional interface of a TipHint that carries, beside
// the hinted tip, the objects that lead to it from the tip before it (the
// etcd store: <prefix>tipobjects/<branch>). An agent at that earlier tip
// imports them instead of fetching the commit from the Git server: with
// 10,000 agents, one git http-backend answered the fetches of one push in
// minutes (docs/scale.md). The objects are untrusted: they are named by
// their content, imported only when they make the tip whole, and the tip
// is still read from Git and accepted as from a fetch.
type TipObjects interface {
	PublishTipObjects(ctx context.Context, commit, base string, pack []byte) error
	TipObjects(ctx context.Context, commit string) (base string, pack []byte, err error)
}

// Packer is an optional interface of a Desired that packs and imports the
// objects between two tips (fleetrepo.Desired).
type Packer interface {
	Pack(base, tip plumbing.Hash, max int) ([]byte, error)
	Import(tip plumbing.Hash, pack []byte) error
}

// maxTipPack bounds a published pack (etcd takes values up to 1.5 MiB by
// default; the JSON's base64 adds a third). A larger change is fetched
// from Git by every agent, as without a hint.
const maxTipPack = 768 << 10

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

// tipObjects is the hint and the Desired as carrier and packer of a tip's
// objects; ok is false unless both are.
func (a *Agent) tipObjects() (TipObjects, Packer, bool) {
	carrier, ok := a.cfg.TipHint.(TipObjects)
	packer, ok2 := a.cfg.Desired.(Packer)
	return carrier, packer, ok && ok2
}

// importTipObjects imports the published objects of the hinted tip when
// they lead from have, the tip this agent holds, so that the fetch that
// follows finds the commit in the cache and asks Git only for the ref
// listing. Anything amiss leaves the fetch to do as it always did.
func (a *Agent) importTipObjects(ctx context.Context, have plumbing.Hash) {
	carrier, packer, ok := a.tipObjects()
	a.tipHint.mu.Lock()
	hinted := a.tipHint.hinted
	a.tipHint.mu.Unlock()
	if !ok || have.IsZero() || hinted == "" || hinted == have.String() {
		return
	}
	base, pack, err := carrier.TipObjects(ctx, hinted)
	if err != nil || pack == nil || base != have.String() || len(pack) > maxTipPack {
		if err != nil && ctx.Err() == nil {
			a.log.Debug("read the published objects of the hinted tip; fetching from Git", "commit", hinted, "err", err)
		}
		return
	}
	if err := packer.Import(plumbing.NewHash(hinted), pack); err != nil {
		a.log.Warn("published objects of the hinted tip not imported; fetching from Git", "commit", hinted, "err", err)
	}
}

// publishTip tells the other agents about a tip read from Git, when the
// hint does not name it yet (a new tip, or a hint that is wrong), with the
// objects that lead to it from base (the tip this agent held before), so
// that the agents at base need not fetch them.
func (a *Agent) publishTip(ctx context.Context, base, commit plumbing.Hash) {
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
	a.publishTipObjects(ctx, base, commit)
	if err := h.PublishTip(ctx, c); err != nil && ctx.Err() == nil {
		a.log.Warn("publish the tip hint (other agents will find the tip at their next poll)", "commit", c, "err", err)
		return
	}
	a.tipHint.mu.Lock()
	a.tipHint.hinted = c
	a.tipHint.mu.Unlock()
}

// publishTipObjects publishes the pack from base to commit, when the hint
// carries objects and it fits.
func (a *Agent) publishTipObjects(ctx context.Context, base, commit plumbing.Hash) {
	carrier, packer, ok := a.tipObjects()
	if !ok || base.IsZero() || base == commit {
		return
	}
	pack, err := packer.Pack(base, commit, maxTipPack)
	if err != nil {
		a.log.Debug("objects of the new tip not published; the other agents fetch them from Git", "commit", commit.String(), "err", err)
		return
	}
	if err := carrier.PublishTipObjects(ctx, commit.String(), base.String(), pack); err != nil && ctx.Err() == nil {
		a.log.Warn("publish the objects of the new tip (the other agents fetch them from Git)", "commit", commit.String(), "err", err)
	}
}
