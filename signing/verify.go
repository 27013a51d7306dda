package signing

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature/options"
)

// MaxPlainEd25519Size is the largest message a Digester keeps in memory so a
// plain (not pre-hashed) ed25519 signature can be checked. Beyond it only
// ECDSA and ed25519ph signatures can match.
const MaxPlainEd25519Size = 32 << 20

// MaxSignatureSize bounds a base64 signature file.
const MaxSignatureSize = 16 << 10

var (
	// ErrNoMatchingKey means the signature is well formed but no trusted
	// key verifies it over this message: the message was changed, or it was
	// signed by a key this node does not trust.
	ErrNoMatchingKey = errors.New("signature does not match any trusted key")
	// ErrMalformedSignature means the signature is not base64 of an ECDSA
	// (ASN.1) or ed25519 (64-byte) signature: empty, truncated or garbled.
	ErrMalformedSignature = errors.New("malformed signature")
)

// Digester computes, while a message is written to it, everything a KeySet
// needs to verify a signature over that message. Make one with
// KeySet.NewDigester, write the message once, then call KeySet.VerifyDigest.
type Digester struct {
	sha256 hash.Hash
	sha512 hash.Hash     // nil unless the set holds an ed25519 key
	plain  *bytes.Buffer // the message for plain ed25519; nil once too large
	size   int64
}

// NewDigester returns a Digester for this key set, for a message of unknown
// length. It always computes SHA-256; it computes SHA-512 and keeps up to
// MaxPlainEd25519Size bytes of the message only when the set holds an
// ed25519 key.
func (ks *KeySet) NewDigester() *Digester { return ks.NewDigesterSize(-1) }

// NewDigesterSize is NewDigester for a message of known length (-1:
// unknown). A message known to be longer than MaxPlainEd25519Size is never
// held in memory; a shorter one is held in a single allocation.
func (ks *KeySet) NewDigesterSize(size int64) *Digester {
	d := &Digester{sha256: sha256.New()}
	if !ks.hasEd25519() {
		return d
	}
	d.sha512 = sha512.New()
	switch {
	case size > MaxPlainEd25519Size:
	case size >= 0:
		d.plain = bytes.NewBuffer(make([]byte, 0, size))
	default:
		d.plain = &bytes.Buffer{}
	}
	return d
}

// Write adds p to the message. It never fails.
func (d *Digester) Write(p []byte) (int, error) {
	d.sha256.Write(p)
	if d.sha512 != nil {
		d.sha512.Write(p)
	}
	d.size += int64(len(p))
	if d.plain != nil {
		if d.size > MaxPlainEd25519Size {
			d.plain = nil
		} else {
			d.plain.Write(p)
		}
	}
	return len(p), nil
}

// SHA256 returns the SHA-256 of what was written so far.
func (d *Digester) SHA256() []byte { return d.sha256.Sum(nil) }

// Size returns the number of bytes written so far.
func (d *Digester) Size() int64 { return d.size }

// Verify reads msg to its end and checks sigBase64 (the content of a cosign
// .sig file) against every trusted key. It returns the name of the key that
// verified it, or an error wrapping ErrNoMatchingKey or ErrMalformedSignature.
func (ks *KeySet) Verify(msg io.Reader, sigBase64 []byte) (keyID string, err error) {
	d := ks.NewDigester()
	if _, err := io.Copy(d, msg); err != nil {
		return "", fmt.Errorf("read signed message: %w", err)
	}
	return ks.VerifyDigest(d, sigBase64)
}

// VerifyDigest checks sigBase64 against the message written into d.
func (ks *KeySet) VerifyDigest(d *Digester, sigBase64 []byte) (keyID string, err error) {
	if len(ks.keys) == 0 {
		return "", errors.New("verify signature: no trusted keys")
	}
	sig, err := DecodeSignature(sigBase64)
	if err != nil {
		return "", err
	}
	for _, k := range ks.keys {
		if k.verify(d, sig) {
			return k.id, nil
		}
	}
	note := ""
	if d.sha512 != nil && d.plain == nil {
		note = fmt.Sprintf("; plain ed25519 not checked: message over %d MiB (sign it with ECDSA or ed25519ph)", MaxPlainEd25519Size>>20)
	}
	return "", fmt.Errorf("%w (%s)%s", ErrNoMatchingKey, strings.Join(ks.IDs(), ", "), note)
}

// verify reports whether k verifies sig over the message digested by d.
func (k *publicKey) verify(d *Digester, sig []byte) bool {
	digest := d.sha256.Sum(nil)
	if k.plain != nil {
		if d.sha512 == nil {
			return false // a Digester from another set; never guess
		}
		digest = d.sha512.Sum(nil)
	}
	if k.digest.VerifySignature(bytes.NewReader(sig), nil, options.WithDigest(digest)) == nil {
		return true
	}
	if k.plain == nil || d.plain == nil || len(sig) != 64 {
		return false
	}
	return k.plain.VerifySignature(bytes.NewReader(sig), bytes.NewReader(d.plain.Bytes())) == nil
}

// DecodeSignature decodes the base64 content of a .sig file (surrounding
// white space allowed) and checks that it has the shape of an ECDSA (ASN.1
// DER) or ed25519 (64 bytes) signature. Errors wrap ErrMalformedSignature.
func DecodeSignature(sigBase64 []byte) ([]byte, error) {
	text := bytes.TrimSpace(sigBase64)
	if len(text) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformedSignature)
	}
	if len(text) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedSignature, len(text), MaxSignatureSize)
	}
	sig, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %w", ErrMalformedSignature, err)
	}
	if len(sig) == 64 {
		return sig, nil
	}
	var rs struct{ R, S asn1.RawValue }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes, neither an ASN.1 ECDSA signature nor a 64-byte ed25519 one", ErrMalformedSignature, len(sig))
	}
	return sig, nil
}
