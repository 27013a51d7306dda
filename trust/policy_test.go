package trust

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/hiddeco/sshsig"
)

// scene is a repository whose accepted tip (c1) upgraded web 1.0.0 -> 1.1.0
// over c0, and the keys to sign what comes next.
type scene struct {
	*memRepo
	ada, node, stranger, old, fileOnly *KeySigner
	bob, carol, dave, eve              CommitSigner
	signers                            *Signers
	c0, c1                             plumbing.Hash
}

func newScene(t testing.TB) *scene {
	t.Helper()
	s := &scene{memRepo: newMemRepo(t)}
	var adaPub, nodePub, oldPub, filePub string
	s.ada, adaPub = sshKey(t, "ada")
	s.node, nodePub = sshKey(t, "node-1")
	s.old, oldPub = sshKey(t, "old")
	s.fileOnly, filePub = sshKey(t, "file-only")
	s.stranger, _ = sshKey(t, "mallory")
	allowed := "# people\n" +
		"ada@example.com " + adaPub + "\n" +
		`old@example.com valid-before="20200101Z" ` + oldPub + "\n" +
		`files@example.com namespaces="file" ` + filePub + "\n" +
		"# reconciler-role: agent\n" +
		"node-1 " + nodePub + "\n"

	bob := pgpKey(t, "Bob", nil)
	carol := pgpKey(t, "Carol", nil)
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	dave := pgpKey(t, "Dave", &packet.Config{Time: func() time.Time { return past }, KeyLifetimeSecs: 3600})
	s.bob, s.carol = pgpSignerAt{bob, time.Now()}, pgpSignerAt{carol, time.Now()}
	s.dave, s.eve = pgpSignerAt{dave, past.Add(time.Minute)}, pgpSignerAt{pgpKey(t, "Eve", nil), time.Now()}
	keys := armored(t, bob, false) + armored(t, revokedCopy(t, carol), false) + armored(t, dave, false)

	var err error
	s.signers, err = LoadSigners(writeFile(t, "allowed_signers", allowed), writeFile(t, "people.asc", keys))
	if err != nil {
		t.Fatal(err)
	}
	s.c0 = s.commit(files("1.0.0", "3.0.0", false), "initial fleet", s.ada)
	s.c1 = s.commit(files("1.1.0", "3.0.0", false), "web: upgrade from 1.0.0 to 1.1.0\n\nReconciler-App: web\n", s.ada, s.c0)
	return s
}

func files(web, api string, paused bool) map[string]string {
	return map[string]string{"fleet.cue": fleetCUE(web, api, paused), "README.md": "the fleet\n"}
}

// rollbackMsg is the message of an agent's rollback of failed.
func rollbackMsg(failed plumbing.Hash) string {
	return "web: roll back from 1.1.0 to 1.0.0\n\nReconciler-App: web\nReconciler-From: 1.1.0\nReconciler-To: 1.0.0\n" +
		"Reconciler-Reason: failed on node-1: health check\nReconciler-Node: node-1\nReconciler-Rollback-Of: " + failed.String() + "\n"
}

// nsSigner signs SSH signatures in another namespace than git's.
type nsSigner struct {
	k  *KeySigner
	ns string
}

func (s nsSigner) Sign(r io.Reader) ([]byte, error) {
	sig, err := sshsig.Sign(r, s.k.ssh, sshsig.HashSHA512, s.ns)
	if err != nil {
		return nil, err
	}
	return sshsig.Armor(sig), nil
}

func TestPolicyAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  Mode
		build func(s *scene) plumbing.Hash
		who   string
	}{
		{"person SSH key", Chain, func(s *scene) plumbing.Hash {
			return s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.ada, s.c1)
		}, "ada@example.com"},
		{"person OpenPGP key", Chain, func(s *scene) plumbing.Hash {
			return s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.bob, s.c1)
		}, "Bob <bob@example.com>"},
		{"agent rollback restoring the spec before the failed commit", Chain, func(s *scene) plumbing.Hash {
			return s.commit(files("1.0.0", "3.0.0", false), rollbackMsg(s.c1), s.node, s.c1)
		}, "node-1"},
		{"agent pause", Chain, func(s *scene) plumbing.Hash {
			return s.commit(files("1.1.0", "3.0.0", true), "web: pause rollout\n\nReconciler-App: web\n", s.node, s.c1)
		}, "node-1"},
		{"merge signed by a person; the merged branch unsigned", Chain, func(s *scene) plumbing.Hash {
			side := s.commit(files("1.1.0", "3.1.0", false), "api 3.1.0 (unsigned, on a branch)", nil, s.c1)
			return s.commit(files("1.1.0", "3.1.0", false), "Merge branch api", s.ada, s.c1, side)
		}, "ada@example.com"},
		{"tip mode: a signed tip over an unsigned commit", Tip, func(s *scene) plumbing.Hash {
			mid := s.commit(files("1.2.0", "3.0.0", false), "unsigned", nil, s.c1)
			return s.commit(files("1.3.0", "3.0.0", false), "web 1.3.0", s.ada, mid)
		}, "ada@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			tip := tc.build(s)
			p := &Policy{Signers: s.signers, Mode: tc.mode}
			if err := p.VerifyTip(s.repo, s.c1, tip); err != nil {
				t.Fatalf("refused: %v", err)
			}
			res, err := p.Check(s.repo, s.c1, tip)
			if err != nil || res[len(res)-1].Signer == nil || res[len(res)-1].Signer.Name != tc.who {
				t.Fatalf("results %+v, %v; want the tip signed by %s", res, err, tc.who)
			}
		})
	}
}

// TestPolicyRefuses is the list of bad input: each is refused,
// with an error naming the commit and why.
func TestPolicyRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		build    func(s *scene) (tip, refused plumbing.Hash)
		sentinel error
		want     string
	}{
		{"unsigned commit", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", nil, s.c1)
			return h, h
		}, ErrUnsigned, "unsigned commit"},
		{"SSH key nobody trusts", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.stranger, s.c1)
			return h, h
		}, ErrUnknownKey, "signed by an untrusted key: SSH key SHA256:"},
		{"OpenPGP key nobody trusts", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.eve, s.c1)
			return h, h
		}, ErrUnknownKey, "signed by an untrusted key: OpenPGP key "},
		{"revoked OpenPGP key", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.carol, s.c1)
			return h, h
		}, ErrKeyRevoked, "signed by a revoked key: Carol <carol@example.com> (person, openpgp "},
		{"expired OpenPGP key", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.dave, s.c1)
			return h, h
		}, ErrKeyExpired, "signed by an expired key: Dave <dave@example.com>"},
		{"SSH key past its allowed_signers valid-before", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.old, s.c1)
			return h, h
		}, ErrKeyExpired, "allowed_signers:3) is valid only before 2020-01-01T00:00:00Z"},
		{"SSH signature with another namespace", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", nsSigner{s.ada, "file"}, s.c1)
			return h, h
		}, ErrNamespace, `SSH signature for another namespace: "file", want "git"`},
		{"SSH key allowed only for another namespace", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.fileOnly, s.c1)
			return h, h
		}, ErrNamespace, "only for namespaces file"},
		{"content changed after signing (SSH)", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.tamper(s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.ada, s.c1), "web 6.6.6")
			return h, h
		}, ErrBadSignature, "does not match the commit's content (changed after signing?)"},
		{"content changed after signing (OpenPGP)", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.tamper(s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.bob, s.c1), "web 6.6.6")
			return h, h
		}, ErrBadSignature, "does not match the commit's content (changed after signing?)"},
		{"trusted signature on a commit whose parent is unsigned", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			mid := s.commit(files("1.2.0", "3.0.0", false), "unsigned", nil, s.c1)
			return s.commit(files("1.3.0", "3.0.0", false), "web 1.3.0", s.ada, mid), mid
		}, ErrUnsigned, "unsigned commit (on the way to the tip "},
		{"agent-signed version bump", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), "web: upgrade from 1.1.0 to 1.2.0\n\nReconciler-App: web\n", s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, "signed by node-1 (agent, ssh SHA256:"},
		{"agent-signed version bump dressed as a rollback", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.2.0", "3.0.0", false), rollbackMsg(s.c1), s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, `sets web's version and artifact to "1.2.0"`},
		{"agent-signed rollback to a version the fleet never ran", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("0.9.0", "3.0.0", false), rollbackMsg(s.c1), s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, `sets web's version and artifact to "0.9.0"`},
		{"agent-signed rollback that changes another app", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.0.0", "3.5.0", false), rollbackMsg(s.c1), s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, "it changes app api too"},
		{"agent-signed rollback of a commit not in the history", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.0.0", "3.0.0", false), rollbackMsg(plumbing.NewHash(strings.Repeat("ab", 20))), s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, "which is not on the first-parent history"},
		{"agent-signed rollback after a person moved on", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			newer := s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", s.ada, s.c1)
			h := s.commit(files("1.0.0", "3.0.0", false), rollbackMsg(s.c1), s.node, newer)
			return h, h
		}, ErrAgentNotAllowed, "rollbacks lose to newer commits"},
		{"agent-signed commit that adds a file", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			f := files("1.0.0", "3.0.0", false)
			f["evil.sh"] = "curl | sh\n"
			h := s.commit(f, rollbackMsg(s.c1), s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, "it changes 2 files (evil.sh, fleet.cue)"},
		{"agent-signed approval (an empty commit naming a rollout)", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.1.0", "3.0.0", false), "web: approve\n\nReconciler-App: web\nReconciler-Promote: "+s.c1.String()+"\nReconciler-Wave: 2\n", s.node, s.c1)
			return h, h
		}, ErrAgentNotAllowed, "it changes 0 files"},
		{"agent-signed merge", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.commit(files("1.0.0", "3.0.0", false), rollbackMsg(s.c1), s.node, s.c1, s.c0)
			return h, h
		}, ErrAgentNotAllowed, "it has 2 parents"},
		{"garbage signature block", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.withSignature(s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", nil, s.c1), "trust me\n")
			return h, h
		}, ErrMalformedSignature, "neither an OpenPGP nor an SSH signature"},
		{"garbage in an SSH signature block", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.withSignature(s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", nil, s.c1),
				"-----BEGIN SSH SIGNATURE-----\nU1NIU0lHZ2FyYmFnZQ==\n-----END SSH SIGNATURE-----\n")
			return h, h
		}, ErrMalformedSignature, "malformed signature: SSH:"},
		{"garbage in an OpenPGP signature block", func(s *scene) (plumbing.Hash, plumbing.Hash) {
			h := s.withSignature(s.commit(files("1.2.0", "3.0.0", false), "web 1.2.0", nil, s.c1),
				"-----BEGIN PGP SIGNATURE-----\n\nZ2FyYmFnZQ==\n=AAAA\n-----END PGP SIGNATURE-----\n")
			return h, h
		}, ErrMalformedSignature, "malformed signature: OpenPGP:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			tip, refused := tc.build(s)
			err := (&Policy{Signers: s.signers, Mode: Chain}).VerifyTip(s.repo, s.c1, tip)
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want a *RefusedError wrapping %v", err, tc.sentinel)
			}
			if re.Commit != refused || re.Tip != tip {
				t.Errorf("refused commit %s (tip %s), want %s (tip %s)", re.Commit, re.Tip, refused, tip)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, refused.String()+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("message:\n  %s\nwant it to start with the commit and contain %q", msg, tc.want)
			}
		})
	}
}

func TestPolicyRefusesARangeOffTheFirstParentHistory(t *testing.T) {
	s := newScene(t)
	other := s.commit(files("2.0.0", "3.0.0", false), "unrelated root", s.ada)
	merge := s.commit(files("2.0.0", "3.0.0", false), "Merge main into other", s.ada, other, s.c1)
	err := (&Policy{Signers: s.signers}).VerifyTip(s.repo, s.c1, merge)
	if !errors.Is(err, ErrNotOnHistory) {
		t.Fatalf("err = %v, want ErrNotOnHistory", err)
	}
}

func TestCheckJudgesEveryCommit(t *testing.T) {
	s := newScene(t)
	a := s.commit(files("1.2.0", "3.0.0", false), "unsigned", nil, s.c1)
	b := s.commit(files("1.3.0", "3.0.0", false), "signed", s.ada, a)
	c := s.commit(files("1.4.0", "3.0.0", false), "stranger", s.stranger, b)
	res, err := (&Policy{Signers: s.signers}).Check(s.repo, s.c1, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Commit != a || res[1].Commit != b || res[2].Commit != c {
		t.Fatalf("results %+v: want a, b, c oldest first", res)
	}
	if !errors.Is(res[0].Err, ErrUnsigned) || res[1].Err != nil || !errors.Is(res[2].Err, ErrUnknownKey) {
		t.Fatalf("verdicts: %v, %v, %v", res[0].Err, res[1].Err, res[2].Err)
	}
}
