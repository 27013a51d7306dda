package trust

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// fleetCUE is a fleet with apps web and api at the versions given.
func fleetCUE(web, api string, paused bool) string {
	return fmt.Sprintf(`package fleet

apps: [Name=string]: {
	version: string
	artifact: url: "file:///releases/\(Name)-\(version).tar.gz"
	health: http: "http://127.0.0.1:8080/health"
}
apps: web: {
	version: %q
	paused:  %v
}
apps: api: version: %q
`, web, paused, api)
}

// sshKey makes an ed25519 SSH key pair with GenerateSSHKey.
func sshKey(t testing.TB, comment string) (*KeySigner, string) {
	t.Helper()
	priv, pub, err := GenerateSSHKey(comment, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseSigningKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(pub))
}

// pgpKey makes an ed25519 OpenPGP entity; cfg may set its creation time and lifetime.
func pgpKey(t testing.TB, name string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{}
	}
	cfg.Algorithm = packet.PubKeyAlgoEdDSA
	e, err := openpgp.NewEntity(name, "", strings.ToLower(name)+"@example.com", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// armored is the entity's public key, armored.
func armored(t testing.TB, e *openpgp.Entity, private bool) string {
	t.Helper()
	var buf bytes.Buffer
	typ := openpgp.PublicKeyType
	if private {
		typ = openpgp.PrivateKeyType
	}
	w, err := armor.Encode(&buf, typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if private {
		err = e.SerializePrivate(w, nil)
	} else {
		err = e.Serialize(w)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}

// revokedCopy returns a copy of e revoked, for its public key: e itself
// still signs.
func revokedCopy(t testing.TB, e *openpgp.Entity) *openpgp.Entity {
	t.Helper()
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored(t, e, true)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ring[0].RevokeKey(packet.KeyCompromised, "laptop stolen", nil); err != nil {
		t.Fatal(err)
	}
	return ring[0]
}

// pgpSignerAt signs with an OpenPGP entity as of a given time.
type pgpSignerAt struct {
	e  *openpgp.Entity
	at time.Time
}

func (s pgpSignerAt) Sign(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	err := openpgp.ArmoredDetachSign(&buf, s.e, r, &packet.Config{Time: func() time.Time { return s.at }})
	return buf.Bytes(), err
}

// writeFile writes content into the test's directory and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// memRepo is an in-memory repository to build commits in.
type memRepo struct {
	t    testing.TB
	repo *git.Repository
	when time.Time
}

func newMemRepo(t testing.TB) *memRepo {
	t.Helper()
	r, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &memRepo{t: t, repo: r, when: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
}

// commit writes a commit of the files (flat names) on parents, signed by
// signer when not nil, and returns its id.
func (m *memRepo) commit(files map[string]string, msg string, signer CommitSigner, parents ...plumbing.Hash) plumbing.Hash {
	m.t.Helper()
	m.when = m.when.Add(time.Minute)
	who := object.Signature{Name: "Ada", Email: "ada@example.com", When: m.when}
	c := &object.Commit{Author: who, Committer: who, Message: msg, TreeHash: m.tree(files), ParentHashes: parents}
	if signer != nil {
		var o plumbing.MemoryObject
		if err := c.EncodeWithoutSignature(&o); err != nil {
			m.t.Fatal(err)
		}
		r, _ := o.Reader()
		sig, err := signer.Sign(r)
		if err != nil {
			m.t.Fatal(err)
		}
		c.PGPSignature = string(sig)
	}
	return m.store(c)
}

// tamper stores a copy of commit h with its message changed and its
// signature kept.
func (m *memRepo) tamper(h plumbing.Hash, message string) plumbing.Hash {
	m.t.Helper()
	c, err := m.repo.CommitObject(h)
	if err != nil {
		m.t.Fatal(err)
	}
	cp := *c
	cp.Message = message
	return m.store(&cp)
}

// withSignature stores a copy of commit h whose gpgsig header is sig.
func (m *memRepo) withSignature(h plumbing.Hash, sig string) plumbing.Hash {
	m.t.Helper()
	c, err := m.repo.CommitObject(h)
	if err != nil {
		m.t.Fatal(err)
	}
	cp := *c
	cp.PGPSignature = sig
	return m.store(&cp)
}

type encoder interface {
	Encode(plumbing.EncodedObject) error
}

func (m *memRepo) store(obj encoder) plumbing.Hash {
	m.t.Helper()
	o := m.repo.Storer.NewEncodedObject()
	if err := obj.Encode(o); err != nil {
		m.t.Fatal(err)
	}
	h, err := m.repo.Storer.SetEncodedObject(o)
	if err != nil {
		m.t.Fatal(err)
	}
	return h
}

func (m *memRepo) tree(files map[string]string) plumbing.Hash {
	m.t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	tree := &object.Tree{}
	for _, n := range names {
		b := m.repo.Storer.NewEncodedObject()
		b.SetType(plumbing.BlobObject)
		w, _ := b.Writer()
		if _, err := w.Write([]byte(files[n])); err != nil {
			m.t.Fatal(err)
		}
		w.Close()
		h, err := m.repo.Storer.SetEncodedObject(b)
		if err != nil {
			m.t.Fatal(err)
		}
		tree.Entries = append(tree.Entries, object.TreeEntry{Name: n, Mode: filemode.Regular, Hash: h})
	}
	return m.store(tree)
}
