package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/fleetops/reconciler/internal/regfile"
)

// KeySet is a set of trusted public keys. A signature is valid when any one
// of them verifies it. A KeySet is safe for concurrent use once built.
type KeySet struct {
	keys []*publicKey
}

// publicKey is one trusted key and the verifiers that can check it.
type publicKey struct {
	id string
	// digest verifies a signature over a digest: SHA-256 for ECDSA,
	// SHA-512 for ed25519ph.
	digest signature.Verifier
	// plain is set for ed25519 keys: it checks plain ed25519 over the
	// whole message.
	plain signature.Verifier
}

// maxKeyFileSize bounds a trusted key file (a PEM key is a few hundred bytes).
const maxKeyFileSize = 1 << 20

// LoadKeySet reads PEM public keys from regular files (a FIFO or a device
// is refused, never read). Each key is named by its file's
// base name (its full path when two base names collide); that name is what
// Verify returns and what errors show.
func LoadKeySet(paths ...string) (*KeySet, error) {
	ks := &KeySet{}
	if len(paths) == 0 {
		return nil, errors.New("load trusted keys: no key files given")
	}
	for _, p := range paths {
		data, err := regfile.ReadFile(p, maxKeyFileSize)
		if err != nil {
			return nil, fmt.Errorf("load trusted key: %w", err)
		}
		id := filepath.Base(p)
		if ks.has(id) {
			id = p
		}
		if err := ks.Add(id, data); err != nil {
			return nil, fmt.Errorf("load trusted key %s: %w", p, err)
		}
	}
	return ks, nil
}

// Add parses a PEM public key (ECDSA or ed25519) and trusts it under id.
func (ks *KeySet) Add(id string, pemBytes []byte) error {
	if ks.has(id) {
		return fmt.Errorf("key %s: already in the set", id)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return fmt.Errorf("key %s: not a PEM public key: %w", id, err)
	}
	k, err := newPublicKey(id, pub)
	if err != nil {
		return fmt.Errorf("key %s: %w", id, err)
	}
	ks.keys = append(ks.keys, k)
	return nil
}

func newPublicKey(id string, pub crypto.PublicKey) (*publicKey, error) {
	k := &publicKey{id: id}
	var err error
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		k.digest, err = signature.LoadVerifier(pub, crypto.SHA256)
	case ed25519.PublicKey:
		k.digest, err = signature.LoadVerifierWithOpts(pub, options.WithED25519ph())
		if err == nil {
			k.plain, err = signature.LoadVerifier(pub, crypto.Hash(0))
		}
	default:
		return nil, fmt.Errorf("unsupported key type %T (want ECDSA or ed25519)", pub)
	}
	return k, err
}

// IDs returns the names of the trusted keys, in the order they were added.
func (ks *KeySet) IDs() []string {
	ids := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		ids[i] = k.id
	}
	return ids
}

// Len returns the number of trusted keys.
func (ks *KeySet) Len() int { return len(ks.keys) }

func (ks *KeySet) has(id string) bool {
	for _, k := range ks.keys {
		if k.id == id {
			return true
		}
	}
	return false
}

// hasEd25519 reports whether any key needs SHA-512 and the plain message.
func (ks *KeySet) hasEd25519() bool {
	for _, k := range ks.keys {
		if k.plain != nil {
			return true
		}
	}
	return false
}
