package trust

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
)

// Why a commit is refused, for errors.Is. A refused commit waits for a new
// one: fetching again will not change the verdict.
var (
	// ErrNoPassphrase: a signing key is encrypted and no passphrase was
	// given (the CLI names its RECONCILER_PASSWORD).
	ErrNoPassphrase = errors.New("the key is encrypted and no passphrase was given")
	// ErrUnsigned: the commit carries no signature.
	ErrUnsigned = errors.New("unsigned commit")
	// ErrUnknownKey: signed, but by a key no --trust-signer file holds.
	ErrUnknownKey = errors.New("signed by an untrusted key")
	// ErrKeyRevoked: signed by a trusted OpenPGP key that has been revoked.
	ErrKeyRevoked = errors.New("signed by a revoked key")
	// ErrKeyExpired: signed by a trusted key that has expired (OpenPGP), or
	// outside the valid-after/valid-before window of its allowed_signers line.
	ErrKeyExpired = errors.New("signed by an expired key")
	// ErrNamespace: an SSH signature made for another namespace than "git".
	ErrNamespace = errors.New("SSH signature for another namespace")
	// ErrBadSignature: the signature does not match the commit's content
	// (changed after signing).
	ErrBadSignature = errors.New("bad signature")
	// ErrMalformedSignature: the signature block cannot be read.
	ErrMalformedSignature = errors.New("malformed signature")
	// ErrAgentNotAllowed: an agent key signed something other than a
	// rollback or pause an agent may write.
	ErrAgentNotAllowed = errors.New("an agent key may sign only rollbacks and pauses")
	// ErrNotOnHistory: the last accepted tip is not on the new tip's
	// first-parent history, so the commits in between cannot be checked.
	ErrNotOnHistory = errors.New("the last accepted commit is not on the new tip's first-parent history")
)

// RefusedError is the policy's verdict against moving the branch to Tip:
// Commit (Tip itself, or a commit on the way to it) does not verify.
type RefusedError struct {
	Commit plumbing.Hash
	Tip    plumbing.Hash
	Err    error
}

func (e *RefusedError) Error() string {
	if e.Commit == e.Tip {
		return fmt.Sprintf("%s: %v", e.Commit, e.Err)
	}
	return fmt.Sprintf("%s: %v (on the way to the tip %s)", e.Commit, e.Err, e.Tip)
}

func (e *RefusedError) Unwrap() error { return e.Err }
