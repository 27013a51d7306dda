package trust

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestAgentCommitBuildsOnTrustedCommitsOnly: a stolen node key plus push
// rights must not deploy. Under --require-signed tip, or on an agent's
// first fetch, the commits between the last accepted tip and the tip are
// not checked, so the attacker pushes unsigned commits that set an old
// version (u1) and then the current one (u2), and signs with the node key
// a "rollback" of u2 that restores u1's version. The rollback rule must
// rest on trusted commits: each commit whose spec the agent commit keeps
// or restores is refused unless it verifies or was accepted.
func TestAgentCommitBuildsOnTrustedCommitsOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     Mode
		accepted func(s *scene) plumbing.Hash
	}{
		{"tip mode", Tip, func(s *scene) plumbing.Hash { return s.c1 }},
		{"first fetch, tip mode", Tip, func(*scene) plumbing.Hash { return plumbing.ZeroHash }},
		{"first fetch, chain mode", Chain, func(*scene) plumbing.Hash { return plumbing.ZeroHash }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			u1 := s.commit(files("0.1.0", "3.0.0", false), "web 0.1.0", nil, s.c1)
			u2 := s.commit(files("1.1.0", "3.0.0", false), "web 1.1.0", nil, u1)
			msg := strings.ReplaceAll(rollbackMsg(u2), "1.0.0", "0.1.0")
			evil := s.commit(files("0.1.0", "3.0.0", false), msg, s.node, u2)
			p := &Policy{Signers: s.signers, Mode: tc.mode}
			err := p.VerifyTip(s.repo, tc.accepted(s), evil)
			if !errors.Is(err, ErrAgentNotAllowed) || !strings.Contains(err.Error(), "which is not trusted: unsigned commit") {
				t.Fatalf("err = %v, want the agent commit refused for building on unsigned %s", err, u1)
			}
			t.Log(err)

			// The same rollback over trusted commits passes in every mode.
			s2 := newScene(t)
			failed := s2.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s2.ada, s2.c1)
			rb := s2.commit(files("1.1.0", "3.0.0", false), strings.ReplaceAll(strings.ReplaceAll(rollbackMsg(failed), "1.1.0", "1.2.0"), "1.0.0", "1.1.0"), s2.node, failed)
			if err := (&Policy{Signers: s2.signers, Mode: tc.mode}).VerifyTip(s2.repo, tc.accepted(s2), rb); err != nil {
				t.Fatalf("a rollback over signed commits: %v", err)
			}
			// A pause over an unsigned parent is refused too: it keeps the parent's spec.
			s3 := newScene(t)
			u := s3.commit(files("0.1.0", "3.0.0", false), "web 0.1.0", nil, s3.c1)
			pause := s3.commit(files("0.1.0", "3.0.0", true), "web: pause rollout\n\nReconciler-App: web\n", s3.node, u)
			if err := (&Policy{Signers: s3.signers, Mode: tc.mode}).VerifyTip(s3.repo, tc.accepted(s3), pause); !errors.Is(err, ErrAgentNotAllowed) {
				t.Fatalf("a pause over an unsigned commit: %v", err)
			}
		})
	}
}
