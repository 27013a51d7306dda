package trust

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Mode says which commits a new tip's acceptance checks.
type Mode string

// Modes (--require-signed).
const (
	// Chain checks every first-parent commit between the last accepted tip
	// and the new one, merges included (the default).
	Chain Mode = "chain"
	// Tip checks the new tip alone, as Flux does.
	Tip Mode = "tip"
)

// ParseMode reads a --require-signed value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Chain, Tip:
		return m, nil
	}
	return "", fmt.Errorf("--require-signed %q: want chain or tip", s)
}

// maxWalk bounds a first-parent walk: a range longer than this is refused
// rather than read without end.
const maxWalk = 100000

// Policy decides whether the tracked branch may move to a new tip.
type Policy struct {
	Signers *Signers
	Mode    Mode   // default Chain
	SpecDir string // directory of the specs in the fleet repo, for agent-signed commits
}

// Result is the verdict on one commit.
type Result struct {
	Commit  plumbing.Hash
	Subject string
	Format  string  // "openpgp", "ssh", "" unsigned
	Signer  *Signer // who signed it, when the signature verifies
	Err     error   // why it is refused; nil when accepted
}

// VerifyTip implements fleetrepo.TipVerifier: nil when the branch may move
// from accepted (zero: nothing accepted yet) to tip, otherwise a
// *RefusedError naming the oldest commit on the way that does not verify.
func (p *Policy) VerifyTip(repo *git.Repository, accepted, tip plumbing.Hash) error {
	results, err := p.Check(repo, accepted, tip)
	if err != nil {
		return &RefusedError{Commit: tip, Tip: tip, Err: err}
	}
	for _, r := range results {
		if r.Err != nil {
			return &RefusedError{Commit: r.Commit, Tip: tip, Err: r.Err}
		}
	}
	return nil
}

// Check returns the verdict on each commit that moving the branch from base
// to head brings in, oldest first: with Chain every first-parent commit
// after base up to head; with Tip, or when base is zero, head alone. The
// error is for a range that cannot be checked (head does not descend from
// base along first parents, a missing object).
func (p *Policy) Check(repo *git.Repository, base, head plumbing.Hash) ([]Result, error) {
	commits, err := p.commits(repo, base, head)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(commits))
	for _, c := range commits {
		out = append(out, p.judgeFrom(repo, c, base))
	}
	return out, nil
}

// commits lists what Check judges, oldest first.
func (p *Policy) commits(repo *git.Repository, base, head plumbing.Hash) ([]*object.Commit, error) {
	tip, err := repo.CommitObject(head)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", head, err)
	}
	if base.IsZero() || p.Mode == Tip {
		return []*object.Commit{tip}, nil
	}
	var chain []*object.Commit
	for c := tip; c.Hash != base; {
		chain = append(chain, c)
		if len(c.ParentHashes) == 0 || len(chain) > maxWalk {
			return nil, fmt.Errorf("%w (%s)", ErrNotOnHistory, base)
		}
		if c, err = repo.CommitObject(c.ParentHashes[0]); err != nil {
			return nil, fmt.Errorf("read the first parent of %s: %w", chain[len(chain)-1].Hash, err)
		}
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// Judge verifies one commit's signature and applies its signer's role
// (an agent's commit must be a rollback or pause; its parents are read
// from repo). A person's commit is judged alone; an agent's also needs
// the commits whose specs it keeps or restores to verify, as nothing
// before it is taken as accepted here (see trustedSource).
func (p *Policy) Judge(repo *git.Repository, c *object.Commit) Result {
	return p.judgeFrom(repo, c, plumbing.ZeroHash)
}

// judgeFrom is Judge with base, the last accepted tip (zero: none), where
// the walk of an agent commit's sources may stop.
func (p *Policy) judgeFrom(repo *git.Repository, c *object.Commit, base plumbing.Hash) Result {
	r := Result{Commit: c.Hash, Subject: strings.SplitN(c.Message, "\n", 2)[0], Format: SignatureFormat(c)}
	sg, source, err := p.judge(repo, c)
	r.Signer = sg
	if err == nil && sg.Role == RoleAgent {
		if err = p.trustedSource(repo, c, source, base); err != nil {
			err = fmt.Errorf("%w: signed by %s, but %v", ErrAgentNotAllowed, sg, err)
		}
	}
	if err != nil {
		r.Err = err
	}
	return r
}

// judge verifies c's signature and its signer's role, without the commits
// before it; for an agent's commit it also returns its source.
func (p *Policy) judge(repo *git.Repository, c *object.Commit) (*Signer, plumbing.Hash, error) {
	sg, err := p.Signers.VerifyCommit(c)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	if sg.Role != RoleAgent {
		return sg, plumbing.ZeroHash, nil
	}
	source, err := p.checkAgentCommit(repo, c)
	if err != nil {
		return sg, source, fmt.Errorf("%w: signed by %s, but %v", ErrAgentNotAllowed, sg, err)
	}
	return sg, source, nil
}
