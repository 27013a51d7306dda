package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/fleetops/reconciler/trust"
)

// commitSignature is who signed one commit of the diffed range.
type commitSignature struct {
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
	Author  string `json:"author"`
	// Signer is the trusted signer, with --trust-signer; Key the key the
	// signature names ("" unsigned).
	Signer string `json:"signer,omitempty"`
	Role   string `json:"role,omitempty"`
	Key    string `json:"key,omitempty"`
	// Verified: checked against --trust-signer with the agents' rules.
	Verified bool   `json:"verified"`
	Detail   string `json:"detail"`
}

// maxDiffCommits bounds the commits diff lists.
const maxDiffCommits = 200

// commitSignatures lists the first-parent commits of head since its merge
// base with base, newest first, and who signed each; with --trust-signer
// each is judged as an agent would judge it.
func commitSignatures(repo *git.Repository, o *diffOptions, baseRev, headRev string) ([]commitSignature, error) {
	var policy *trust.Policy
	if o.signers != nil {
		policy = &trust.Policy{Signers: o.signers, SpecDir: o.dir}
	}
	commits, err := rangeCommits(repo, baseRev, headRev)
	if err != nil {
		return nil, err
	}
	out := []commitSignature{}
	for _, c := range commits {
		out = append(out, signatureOf(repo, policy, c))
	}
	return out, nil
}

func rangeCommits(repo *git.Repository, baseRev, headRev string) ([]*object.Commit, error) {
	base, err := commitAt(repo, baseRev)
	if err != nil {
		return nil, err
	}
	head, err := commitAt(repo, headRev)
	if err != nil {
		return nil, err
	}
	bases, err := head.MergeBase(base)
	if err != nil {
		return nil, fmt.Errorf("merge base of %s and %s: %w", baseRev, headRev, err)
	}
	stop := map[plumbing.Hash]bool{}
	for _, b := range bases {
		stop[b.Hash] = true
	}
	var out []*object.Commit
	for c := head; !stop[c.Hash] && len(out) < maxDiffCommits; {
		out = append(out, c)
		if len(c.ParentHashes) == 0 {
			break
		}
		if c, err = repo.CommitObject(c.ParentHashes[0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func commitAt(repo *git.Repository, rev string) (*object.Commit, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("revision %q: %w", rev, err)
	}
	return repo.CommitObject(*h)
}

func signatureOf(repo *git.Repository, policy *trust.Policy, c *object.Commit) commitSignature {
	cs := commitSignature{Commit: c.Hash.String(), Subject: strings.SplitN(c.Message, "\n", 2)[0], Author: c.Author.Name}
	key, err := trust.SignatureKey(c)
	cs.Key = key
	switch {
	case policy != nil:
		r := policy.Judge(repo, c)
		cs.Verified = r.Err == nil
		if r.Signer != nil {
			cs.Signer, cs.Role = r.Signer.Name, string(r.Signer.Role)
		}
		cs.Detail = "signed by " + cs.Signer + " (" + cs.Role + ", " + key + ")"
		if r.Err != nil {
			cs.Detail = "UNTRUSTED: " + r.Err.Error()
		}
	case err != nil:
		cs.Detail = err.Error()
	case key == "":
		cs.Detail = "unsigned"
	default:
		cs.Detail = "signed with " + key + " (not verified: give --trust-signer)"
	}
	return cs
}

func printCommitSignatures(w io.Writer, commits []commitSignature, markdown bool) {
	if len(commits) == 0 {
		return
	}
	if markdown {
		fmt.Fprintln(w, "\n#### Commits\n\n| commit | subject | author | signature |\n|---|---|---|---|")
		for _, c := range commits {
			fmt.Fprintf(w, "| `%.12s` | %s | %s | %s |\n", c.Commit, mdCell(c.Subject), mdCell(c.Author), mdCell(c.Detail))
		}
		return
	}
	fmt.Fprintln(w, "\ncommits:")
	for _, c := range commits {
		fmt.Fprintf(w, "  %.12s %s (%s): %s\n", c.Commit, c.Subject, c.Author, c.Detail)
	}
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
