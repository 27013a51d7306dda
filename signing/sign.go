package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// PrivateKey is a signing key loaded from PEM.
type PrivateKey struct {
	priv crypto.Signer
	// Ed25519ph makes an ed25519 key sign pre-hashed (SHA-512, streaming,
	// any size), the form cosign uses with a transparency log. By default an
	// ed25519 key signs plain ed25519, the form `cosign verify-blob --key`
	// checks, limited to MaxPlainEd25519Size bytes. ECDSA keys ignore it.
	Ed25519ph bool
}

// GenerateKeyPair makes an ECDSA P-256 key pair, as `cosign
// generate-key-pair` does: the private key PEM is "ENCRYPTED SIGSTORE PRIVATE
// KEY" (scrypt and secretbox) under password, which may be empty.
func GenerateKeyPair(password []byte) (privPEM, pubPEM []byte, err error) {
	if password == nil {
		password = []byte{} // nil would mean "do not encrypt"
	}
	privPEM, pubPEM, err = cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return privPEM, pubPEM, nil
}

// LoadPrivateKey decrypts a PEM private key made by GenerateKeyPair or by
// cosign (generate-key-pair or import-key-pair), or reads an unencrypted
// PKCS#8 one. ECDSA and ed25519 keys are supported.
func LoadPrivateKey(pemBytes, password []byte) (*PrivateKey, error) {
	if password == nil {
		password = []byte{}
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("load private key (wrong password?): %w", err)
	}
	switch priv := priv.(type) {
	case *ecdsa.PrivateKey:
		return &PrivateKey{priv: priv}, nil
	case ed25519.PrivateKey:
		return &PrivateKey{priv: priv}, nil
	default:
		return nil, fmt.Errorf("load private key: unsupported key type %T (want ECDSA or ed25519)", priv)
	}
}

// Public returns the public half of the key.
func (k *PrivateKey) Public() crypto.PublicKey { return k.priv.Public() }

// PublicPEM returns the public half of the key as PEM, as in a .pub file.
func (k *PrivateKey) PublicPEM() ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
}

// Sign reads r to its end and returns the base64 signature, the exact
// content `cosign sign-blob --key --output-signature` writes. ECDSA signs the
// SHA-256 of the stream; ed25519 signs the whole message (bounded by
// MaxPlainEd25519Size) unless key.Ed25519ph is set.
func Sign(r io.Reader, key *PrivateKey) ([]byte, error) {
	signer, msg, err := key.signer(r)
	if err != nil {
		return nil, err
	}
	sig, err := signer.SignMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sig)))
	base64.StdEncoding.Encode(out, sig)
	return out, nil
}

// signer picks the sigstore signer for the key and the reader it consumes:
// plain ed25519 needs the message in memory, bounded.
func (k *PrivateKey) signer(r io.Reader) (signature.Signer, io.Reader, error) {
	ed, ok := k.priv.(ed25519.PrivateKey)
	switch {
	case !ok:
		s, err := signature.LoadSigner(k.priv, crypto.SHA256)
		return s, r, err
	case k.Ed25519ph:
		s, err := signature.LoadSignerWithOpts(ed, options.WithED25519ph())
		return s, r, err
	}
	msg, err := io.ReadAll(io.LimitReader(r, MaxPlainEd25519Size+1))
	if err != nil {
		return nil, nil, fmt.Errorf("sign: read message: %w", err)
	}
	if len(msg) > MaxPlainEd25519Size {
		return nil, nil, errors.New("sign: message over the plain ed25519 limit: use an ECDSA key or ed25519ph")
	}
	s, err := signature.LoadSigner(ed, crypto.Hash(0))
	return s, bytes.NewReader(msg), err
}
