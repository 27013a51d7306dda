package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/fleetops/reconciler/internal/redact"
)

// acceptedPrefix names, in the cache, the last accepted tip of each tracked
// branch. It survives restarts, so a restarted agent still refuses a branch
// that moved backwards while it was down.
const acceptedPrefix = "refs/fleetrepo/accepted/"

// TipVerifier decides whether the tracked branch may move from accepted
// (zero: nothing accepted yet) to tip, which descends from it; repo is the
// cache, locked for the call. An error refuses the tip (trust.Policy).
type TipVerifier interface {
	VerifyTip(repo *git.Repository, accepted, tip plumbing.Hash) error
}

// CommitSigner signs a commit's bytes (without signature) and returns the
// armored signature for its gpgsig header; go-git's Signer interface.
type CommitSigner interface {
	Sign(message io.Reader) ([]byte, error)
}

// Desired is the desired state: one branch of the fleet repo (the specs).
// It is safe for concurrent use.
type Desired struct {
	opts     DesiredOptions
	s        *store
	ref      plumbing.ReferenceName // refs/heads/<branch> on the remote
	accepted plumbing.ReferenceName // in the cache
}

// OpenDesired opens the desired state at opts.URL, creating the cache when
// needed. It does not contact the repository: call Fetch.
func OpenDesired(ctx context.Context, opts DesiredOptions) (*Desired, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s, err := openStore(opts.URL, opts.CacheDir, opts.Auth, opts.Logger, opts.Timeout)
	if err != nil {
		return nil, fmt.Errorf("open desired state: %w", err)
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = defaultPoll(s)
	}
	return &Desired{
		opts:     opts,
		s:        s,
		ref:      plumbing.NewBranchReferenceName(opts.Branch),
		accepted: plumbing.ReferenceName(acceptedPrefix + opts.Branch),
	}, nil
}

// Branch returns the full name of the tracked branch (refs/heads/main).
func (d *Desired) Branch() plumbing.ReferenceName { return d.ref }

// URL returns the repository URL as dialled, credentials redacted (for messages).
func (d *Desired) URL() string { return redact.String(d.s.url) }

// Repository returns the local cache, for reading the trees of fetched
// commits (spec.LoadCommit). Objects are only ever added to it. Reading it
// while another goroutine calls Fetch or writes a commit on the same handle
// is safe only through View (an in-memory cache has no locking of its own).
func (d *Desired) Repository() *git.Repository { return d.s.repo }

// View runs fn with the cache locked against this handle's fetches and writes.
func (d *Desired) View(fn func(*git.Repository) error) error {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return fn(d.s.repo)
}

// Accepted returns the last accepted tip (zero before the first Fetch).
func (d *Desired) Accepted() plumbing.Hash {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	return d.acceptedLocked()
}

func (d *Desired) acceptedLocked() plumbing.Hash {
	r, err := d.s.repo.Storer.Reference(d.accepted)
	if err != nil {
		return plumbing.ZeroHash
	}
	return r.Hash()
}

// Fetch brings the tip of the tracked branch and its objects into the cache
// and returns it. A tip that does not descend from the last accepted one is
// refused with a *NotDescendantError, and one the Verifier refuses with an
// *UntrustedError; Fetch then returns the last accepted tip together with
// the error, and keeps it. A missing branch is ErrNoCommit;
// network failures are *TransientError. An unchanged tip costs one ref listing.
func (d *Desired) Fetch(ctx context.Context) (plumbing.Hash, error) {
	tip, err := d.s.head(ctx, d.ref)
	if err != nil {
		return d.Accepted(), fmt.Errorf("fetch %s: %w", d.ref, err)
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	old := d.acceptedLocked()
	if tip.IsZero() {
		return old, fmt.Errorf("fetch %s from %s: %w", d.ref, d.s.url, ErrNoCommit)
	}
	if tip == old {
		return old, nil
	}
	if err := d.s.fetch(ctx, map[plumbing.ReferenceName]plumbing.Hash{d.ref: tip}); err != nil {
		return old, fmt.Errorf("fetch %s: %w", d.ref, err)
	}
	if err := d.acceptLocked(old, tip); err != nil {
		return old, err
	}
	return tip, nil
}

// acceptLocked makes tip the accepted one if it descends from old.
func (d *Desired) acceptLocked(old, tip plumbing.Hash) error {
	if !old.IsZero() {
		ok, behind, err := d.descends(old, tip)
		if err != nil {
			return err
		}
		if !ok {
			err := &NotDescendantError{Repo: d.s.url, Ref: d.ref, Accepted: old, Got: tip, Behind: behind}
			d.s.log.Warn("refusing tracked branch", "err", err)
			return err
		}
	}
	if v := d.opts.Verifier; v != nil {
		if err := v.VerifyTip(d.s.repo, old, tip); err != nil {
			return &UntrustedError{Repo: d.s.url, Ref: d.ref, Accepted: old, Got: tip, Err: err}
		}
	}
	if err := d.s.setLocal(d.accepted, tip); err != nil {
		return err
	}
	d.s.log.Debug("accepted tip", "ref", d.ref, "commit", tip)
	return nil
}

// Descends reports whether commit tip descends from (or is) commit
// ancestor in this handle's cache; false when either is not there (a tip
// older than the ancestor has never fetched it). The rollout coordinator
// asks it before a tip may supersede a rollout (docs/rollouts.md).
func (d *Desired) Descends(tip, ancestor plumbing.Hash) bool {
	if tip == ancestor {
		return true
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	ok, _, err := d.descends(ancestor, tip)
	return err == nil && ok
}

// descends reports whether tip descends from old, and if not whether tip is
// an ancestor of old (the branch moved backwards).
func (d *Desired) descends(old, tip plumbing.Hash) (ok, behind bool, err error) {
	oc, err := d.s.repo.CommitObject(old)
	if err != nil {
		return false, false, fmt.Errorf("read accepted commit %s: %w", short(old), err)
	}
	tc, err := d.s.repo.CommitObject(tip)
	if err != nil {
		return false, false, fmt.Errorf("read fetched commit %s: %w", short(tip), err)
	}
	if ok, err = oc.IsAncestor(tc); err != nil || ok {
		return ok, false, wrapAncestry(err, old, tip)
	}
	behind, err = tc.IsAncestor(oc)
	return false, behind, wrapAncestry(err, tip, old)
}

func wrapAncestry(err error, a, b plumbing.Hash) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("compare %s with %s: %w", short(a), short(b), err)
}

// CommitObject returns a commit of the cache (fetched or written by this handle).
func (d *Desired) CommitObject(h plumbing.Hash) (*object.Commit, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	c, err := d.s.repo.CommitObject(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("commit %s is not in the cache of %s (Fetch first): %w", short(h), d.s.url, err)
	}
	return c, err
}
