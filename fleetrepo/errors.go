package fleetrepo

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Sentinel errors, for branching with errors.Is.
var (
	// ErrConflict: a compare-and-swap lost because the ref moved meanwhile.
	// Re-read and decide again; the returned error is a *ConflictError.
	ErrConflict = errors.New("ref moved concurrently")
	// ErrLeaseHeld: the slot has an unexpired holder (as this observer sees it).
	ErrLeaseHeld = errors.New("lease is held")
	// ErrLeaseLost: the lease changed since the caller's token: it was taken
	// over, broken or released. The caller no longer holds it.
	ErrLeaseLost = errors.New("lease lost")
	// ErrAlreadyRolledBack: another writer already pushed the rollback.
	ErrAlreadyRolledBack = errors.New("already rolled back")
	// ErrSuperseded: the tip no longer targets the failed version (a person
	// pushed something newer); rollback commits lose to people.
	ErrSuperseded = errors.New("superseded by a newer commit")
	// ErrAppNotFound: no CUE file declares the app (or the field).
	ErrAppNotFound = errors.New("app not found")
	// ErrNoCommit: the tracked branch or the ref does not exist yet.
	ErrNoCommit = errors.New("no commit")
	// ErrRejected: the server refused a push for another reason than a
	// lost race (a protected branch, a hook, missing rights). Retrying will
	// not help; the configuration must change.
	ErrRejected error = &personError{msg: "push rejected by the server"}
)

// ErrBranchExists means CommitRequest.Branch, which must be new, exists.
var ErrBranchExists = errors.New("the branch exists already")

// personError is a failure retrying cannot fix: a person must act (change
// the server's configuration, the credentials or the agent's flags). It
// matches NeedsPerson.
type personError struct {
	msg string
	err error
}

func (e *personError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}
func (e *personError) Unwrap() error { return e.err }

// NeedsPerson marks the error as one a person must act on.
func (e *personError) NeedsPerson() bool { return true }

// ConflictError is a lost compare-and-swap on Ref: the caller expected
// Expected but the remote holds Actual (zero when the ref is absent).
// It matches ErrConflict. What to do: re-read and decide again.
type ConflictError struct {
	Repo     string
	Ref      plumbing.ReferenceName
	Expected plumbing.Hash
	Actual   plumbing.Hash
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("update %s in %s: expected %s but it is %s",
		e.Ref, e.Repo, short(e.Expected), short(e.Actual))
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// NotDescendantError refuses a tip of the tracked branch that does not
// descend from the last accepted commit: a force-push backwards or sideways.
// The last accepted state is kept. What to do: nothing until the branch moves
// forward again (or an operator resets the cache).
type NotDescendantError struct {
	Repo     string
	Ref      plumbing.ReferenceName
	Accepted plumbing.Hash // last good tip, still in force
	Got      plumbing.Hash // refused tip
	Behind   bool          // Got is an ancestor of Accepted: the branch moved backwards
}

func (e *NotDescendantError) Error() string {
	how := "sideways (force-push to an unrelated history)"
	if e.Behind {
		how = "backwards (force-push to an older commit)"
	}
	return fmt.Sprintf("refusing %s of %s at %s: it moved %s and does not descend from the last accepted commit %s; keeping %s",
		e.Ref, e.Repo, short(e.Got), how, short(e.Accepted), short(e.Accepted))
}

// UntrustedError refuses a tip of the tracked branch that the handle's
// TipVerifier does not accept: an unsigned, untrusted, tampered or badly
// signed commit on the way to it. The last accepted state is kept. What to
// do: nothing until a tip whose path verifies arrives (a person signs, or
// the branch is reset to a signed history).
type UntrustedError struct {
	Repo     string
	Ref      plumbing.ReferenceName
	Accepted plumbing.Hash // last good tip, still in force (zero: none yet)
	Got      plumbing.Hash // refused tip
	Err      error         // the verifier's reason: "<commit>: <why>"
}

// Error reads "untrusted: <commit>: <why>; ...": Summary, then what is kept.
func (e *UntrustedError) Error() string {
	kept := "nothing is accepted yet"
	if !e.Accepted.IsZero() {
		kept = "keeping " + short(e.Accepted)
	}
	return fmt.Sprintf("%s; refusing %s of %s at %s, %s", e.Summary(), e.Ref, e.Repo, short(e.Got), kept)
}

// Summary is "untrusted: <commit>: <why>", the form node reports show.
func (e *UntrustedError) Summary() string { return "untrusted: " + e.Err.Error() }

func (e *UntrustedError) Unwrap() error { return e.Err }

// TransientError is a failure to reach or talk to the repository (network,
// server, local I/O). What to do: retry with jittered backoff.
type TransientError struct {
	Op   string
	Repo string
	Err  error
}

func (e *TransientError) Error() string { return fmt.Sprintf("%s %s: %v", e.Op, e.Repo, e.Err) }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks the error as worth retrying with jittered backoff.
func (e *TransientError) Transient() bool { return true }

// classify wraps err from talking to repo: credentials refused or a missing
// repository need a person; anything else (network, server) is transient.
func classify(op, repo string, err error) error {
	for _, permanent := range []error{transport.ErrAuthenticationRequired, transport.ErrAuthorizationFailed,
		transport.ErrRepositoryNotFound, transport.ErrInvalidAuthMethod} {
		if errors.Is(err, permanent) {
			return &personError{msg: fmt.Sprintf("%s %s", op, repo), err: err}
		}
	}
	return &TransientError{Op: op, Repo: repo, Err: err}
}

// IsTransient reports whether err is worth retrying with backoff: it wraps
// an error whose Transient method says so (a *TransientError).
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient() && !NeedsPerson(err)
}

// NeedsPerson reports whether retrying err cannot help and a person must
// act: a push the server refused (ErrRejected: a protected ref, a hook,
// missing rights), credentials refused, a missing repository, a tip refused
// as untrusted or not descending. It wraps an error whose NeedsPerson method
// says so, or one of those types.
func NeedsPerson(err error) bool {
	var p interface{ NeedsPerson() bool }
	if errors.As(err, &p) && p.NeedsPerson() {
		return true
	}
	var nd *NotDescendantError
	var ut *UntrustedError
	return errors.As(err, &nd) || errors.As(err, &ut)
}

func short(h plumbing.Hash) string {
	if h.IsZero() {
		return "(absent)"
	}
	return h.String()[:12]
}
