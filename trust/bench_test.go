package trust

import (
	"fmt"
	"testing"
)

// BenchmarkVerifyChain: the cost of accepting a tip 100 signed commits
// ahead (chain), per commit, by signature kind; and of judging one
// agent-signed rollback (three spec loads).
func BenchmarkVerifyChain(b *testing.B) {
	s := newScene(b)
	p := &Policy{Signers: s.signers}
	for _, kind := range []struct {
		name   string
		signer CommitSigner
	}{{"ssh-ed25519", s.ada}, {"openpgp-ed25519", s.bob}} {
		tip := s.c1
		for i := range 100 {
			tip = s.commit(files(fmt.Sprintf("1.%d.0", i+2), "3.0.0", false), "bump", kind.signer, tip)
		}
		b.Run(kind.name+"/read-only-100-commits", func(b *testing.B) { // reference: walk and encode, no crypto
			for b.Loop() {
				cs, err := p.commits(s.repo, s.c1, tip)
				for _, c := range cs {
					if _, err := payload(c); err != nil {
						b.Fatal(err)
					}
				}
				if err != nil || len(cs) != 100 {
					b.Fatal(err, len(cs))
				}
			}
		})
		b.Run(kind.name+"/100-commits", func(b *testing.B) {
			for b.Loop() {
				if err := p.VerifyTip(s.repo, s.c1, tip); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	rb := s.commit(files("1.0.0", "3.0.0", false), rollbackMsg(s.c1), s.node, s.c1)
	b.Run("agent-rollback", func(b *testing.B) {
		for b.Loop() {
			if err := p.VerifyTip(s.repo, s.c1, rb); err != nil {
				b.Fatal(err)
			}
		}
	})
}
