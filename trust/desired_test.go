package trust

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// desiredScene is a bare fleet repo on disk, a person who signs with an
// SSH key, two nodes with agent keys, and their trust file.
type desiredScene struct {
	t                 *testing.T
	bare              string
	ada, node1, node2 *KeySigner
	policy            *Policy
	ctx               context.Context
	ident             fleetrepo.Identity
}

func newDesiredScene(t *testing.T) *desiredScene {
	t.Helper()
	if testing.Short() {
		t.Skip("runs git")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	s := &desiredScene{t: t, ctx: ctx, ident: fleetrepo.Identity{Name: "Ada", Email: "ada@example.com"}}
	var adaPub, n1Pub, n2Pub string
	s.ada, adaPub = sshKey(t, "ada")
	s.node1, n1Pub = sshKey(t, "node-1")
	s.node2, n2Pub = sshKey(t, "node-2")
	signers, err := LoadSigners(writeFile(t, "allowed_signers",
		"ada@example.com "+adaPub+"\n# reconciler-role: agent\nnode-1 "+n1Pub+"\nnode-2 "+n2Pub+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.policy = &Policy{Signers: signers, Mode: Chain}
	s.bare = gittest.NewBare(t, files("1.0.0", "3.0.0", false)) // unsigned initial commit
	return s
}

// open is a Desired handle; verify makes it check the policy, signer signs
// what it writes.
func (s *desiredScene) open(verify bool, signer *KeySigner, who string) *fleetrepo.Desired {
	s.t.Helper()
	opts := fleetrepo.DesiredOptions{URL: s.bare, CacheDir: s.t.TempDir(), Identity: fleetrepo.Identity{Name: who}}
	if verify {
		opts.Verifier = s.policy
	}
	if signer != nil {
		opts.Signer = signer
	}
	d, err := fleetrepo.OpenDesired(s.ctx, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// person writes web's version as Ada, signed unless signer is nil.
func (s *desiredScene) person(signer *KeySigner, version string) plumbing.Hash {
	s.t.Helper()
	d := s.open(false, signer, "Ada")
	if _, err := d.Fetch(s.ctx); err != nil {
		s.t.Fatal(err)
	}
	h, err := d.SetVersion(s.ctx, plumbing.ZeroHash, "web", version, "", s.ident)
	if err != nil {
		s.t.Fatal(err)
	}
	return h
}

func untrusted(t *testing.T, err error, summary string) {
	t.Helper()
	var ue *fleetrepo.UntrustedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *fleetrepo.UntrustedError", err)
	}
	if !strings.HasPrefix(ue.Summary(), summary) {
		t.Fatalf("summary %q, want it to start with %q", ue.Summary(), summary)
	}
}

// TestDesiredKeepsTheLastTrustedTip walks the refusals through Fetch: a
// fresh agent refuses an unsigned tip; an unsigned commit on top of an
// accepted one is refused and the accepted tip kept; a signed commit on top
// of it too; once the branch is reset and a signed commit pushed, it is
// accepted; a force-push back to an older signed commit stays refused.
func TestDesiredKeepsTheLastTrustedTip(t *testing.T) {
	s := newDesiredScene(t)
	agent := s.open(true, nil, "node-1")
	initial := gittest.RevParse(t, s.bare, "main")
	tip, err := agent.Fetch(s.ctx)
	untrusted(t, err, "untrusted: "+initial+": unsigned commit")
	if !tip.IsZero() || !strings.Contains(err.Error(), "nothing is accepted yet") {
		t.Fatalf("fresh agent: tip %s, %v", tip, err)
	}

	signed := s.person(s.ada, "1.1.0")
	if tip, err = agent.Fetch(s.ctx); err != nil || tip != signed {
		t.Fatalf("signed tip: %s, %v", tip, err)
	}
	unsigned := plumbing.NewHash(gittest.PushFiles(t, s.bare, "main", files("1.2.0", "3.0.0", false), "unsigned"))
	tip, err = agent.Fetch(s.ctx)
	untrusted(t, err, "untrusted: "+unsigned.String()+": unsigned commit")
	if tip != signed || agent.Accepted() != signed || !strings.Contains(err.Error(), "keeping "+signed.String()[:12]) {
		t.Fatalf("after an unsigned push: tip %s, accepted %s, %v", tip, agent.Accepted(), err)
	}

	onTop := s.person(s.ada, "1.3.0")
	tip, err = agent.Fetch(s.ctx)
	untrusted(t, err, "untrusted: "+unsigned.String()+": unsigned commit (on the way to the tip "+onTop.String()+")")
	if tip != signed {
		t.Fatalf("a signed commit on an unsigned one moved the agent to %s", tip)
	}

	gittest.ForcePush(t, s.bare, "main", signed.String())
	next := s.person(s.ada, "1.4.0")
	if tip, err = agent.Fetch(s.ctx); err != nil || tip != next {
		t.Fatalf("the next tip whose path verifies: %s, %v", tip, err)
	}
	gittest.ForcePush(t, s.bare, "main", signed.String())
	tip, err = agent.Fetch(s.ctx)
	var nd *fleetrepo.NotDescendantError
	if !errors.As(err, &nd) || !nd.Behind || tip != next {
		t.Fatalf("force-push to an older signed commit: tip %s, %v", tip, err)
	}
}

// TestDesiredAgentCommits: a rollback a node signs is accepted by its
// peers; a version bump it signs is refused by them and by itself.
func TestDesiredAgentCommits(t *testing.T) {
	s := newDesiredScene(t)
	s.person(s.ada, "1.1.0")
	failed := s.person(s.ada, "1.2.0")
	writer, peer := s.open(true, s.node1, "node-1"), s.open(true, nil, "node-2")
	for _, d := range []*fleetrepo.Desired{writer, peer} {
		if tip, err := d.Fetch(s.ctx); err != nil || tip != failed {
			t.Fatalf("fetch: %s, %v", tip, err)
		}
	}
	rb, err := writer.Rollback(s.ctx, fleetrepo.RollbackRequest{App: "web", Failed: failed, Reason: "health check failed", Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if writer.Accepted() != rb {
		t.Fatalf("the writer did not accept its own rollback %s (accepted %s)", rb, writer.Accepted())
	}
	if tip, err := peer.Fetch(s.ctx); err != nil || tip != rb {
		t.Fatalf("peer on the agent-signed rollback: %s, %v", tip, err)
	}
	// The same node key bumping a version: peers refuse it, and so does the writer.
	bump, err := writer.SetVersion(s.ctx, rb, "web", "1.2.0", "", fleetrepo.Identity{Name: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if writer.Accepted() != rb {
		t.Fatalf("the writer accepted its own version bump %s", bump)
	}
	tip, err := peer.Fetch(s.ctx)
	untrusted(t, err, "untrusted: "+bump.String()+": an agent key may sign only rollbacks and pauses: signed by node-1 (agent")
	if tip != rb || !errors.Is(err, ErrAgentNotAllowed) {
		t.Fatalf("peer moved to %s on an agent-signed bump: %v", tip, err)
	}
}

// TestDesiredAgentRollbackToWhatTheFleetRan (issue 17, bug 3): 1.1.0 and
// 1.2.0 were committed before any node moved; 1.2.0 failed; the agent's
// rollback restores 1.0.0, the version the fleet ran (Reconciler-To), as of
// the commit that set it, not 1.1.0 (never deployed): its peers accept it,
// and a node key still cannot restore a version no commit before had.
func TestDesiredAgentRollbackToWhatTheFleetRan(t *testing.T) {
	s := newDesiredScene(t)
	s.person(s.ada, "1.1.0")
	failed := s.person(s.ada, "1.2.0")
	writer, peer := s.open(true, s.node1, "node-1"), s.open(true, nil, "node-2")
	for _, d := range []*fleetrepo.Desired{writer, peer} {
		if _, err := d.Fetch(s.ctx); err != nil {
			t.Fatal(err)
		}
	}
	rb, err := writer.Rollback(s.ctx, fleetrepo.RollbackRequest{App: "web", Failed: failed, To: "1.0.0",
		Reason: "health check failed", Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := writer.AppVersion(rb, "web"); v != "1.0.0" {
		t.Fatalf("the rollback restored %q, want 1.0.0", v)
	}
	if tip, err := peer.Fetch(s.ctx); err != nil || tip != rb {
		t.Fatalf("peer on the agent-signed rollback to 1.0.0: %s, %v", tip, err)
	}
}

// TestDesiredAgentRollbackEditForm: when the failed commit changed two
// apps, the agent's rollback edits back only the failed app's fields; its
// peers accept it, the other app keeps what the failed commit gave it.
func TestDesiredAgentRollbackEditForm(t *testing.T) {
	s := newDesiredScene(t)
	s.person(s.ada, "1.1.0")
	d := s.open(false, s.ada, "Ada")
	tip, err := d.Fetch(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	failed, err := d.Commit(s.ctx, fleetrepo.CommitRequest{Expect: tip, Author: s.ident, Message: "web 1.2.0 and api 3.1.0",
		Files: map[string][]byte{"fleet.cue": []byte(fleetCUE("1.2.0", "3.1.0", false))}})
	if err != nil {
		t.Fatal(err)
	}
	writer, peer := s.open(true, s.node2, "node-2"), s.open(true, nil, "node-1")
	for _, h := range []*fleetrepo.Desired{writer, peer} {
		if _, err := h.Fetch(s.ctx); err != nil {
			t.Fatal(err)
		}
	}
	rb, err := writer.Rollback(s.ctx, fleetrepo.RollbackRequest{App: "web", Failed: failed, Reason: "canary failed", Node: "node-2"})
	if err != nil {
		t.Fatal(err)
	}
	if msg := gittest.Git(t, s.bare, "log", "-1", "--format=%s", rb.String()); strings.HasPrefix(msg, "Revert") {
		t.Fatalf("want the edit form, got %q", msg)
	}
	if tip, err := peer.Fetch(s.ctx); err != nil || tip != rb {
		t.Fatalf("peer on the edit-form rollback: %s, %v", tip, err)
	}
	if v, _ := peer.AppVersion(rb, "api"); v != "3.1.0" {
		t.Fatalf("api at the rollback = %q, want 3.1.0 kept", v)
	}
}
