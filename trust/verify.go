package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// Namespace is the SSH signature namespace of git commits.
const Namespace = "git"

// Signature formats, as git's gpg.format names them.
const (
	FormatOpenPGP = "openpgp"
	FormatSSH     = "ssh"
)

const (
	pgpSigBegin = "-----BEGIN PGP SIGNATURE-----"
	sshSigBegin = "-----BEGIN SSH SIGNATURE-----"
)

// SignatureFormat returns the format of a commit's signature block: "openpgp",
// "ssh", "" when unsigned, or "unknown".
func SignatureFormat(c *object.Commit) string {
	sig := strings.TrimSpace(c.PGPSignature)
	switch {
	case sig == "":
		return ""
	case strings.HasPrefix(sig, pgpSigBegin):
		return FormatOpenPGP
	case strings.HasPrefix(sig, sshSigBegin):
		return FormatSSH
	}
	return "unknown"
}

// SignatureKey names the key a commit's signature claims to be made by,
// without verifying anything: "ssh SHA256:...", "openpgp <issuer>", or ""
// when the commit is unsigned. For showing, never for deciding.
func SignatureKey(c *object.Commit) (string, error) {
	switch SignatureFormat(c) {
	case "":
		return "", nil
	case FormatSSH:
		sig, err := sshsig.Unarmor([]byte(strings.TrimSpace(c.PGPSignature)))
		if err != nil {
			return "", fmt.Errorf("%w: SSH: %v", ErrMalformedSignature, err)
		}
		return "ssh " + ssh.FingerprintSHA256(sig.PublicKey), nil
	case FormatOpenPGP:
		issuer, err := pgpIssuer(c.PGPSignature)
		if err != nil {
			return "", fmt.Errorf("%w: OpenPGP: %v", ErrMalformedSignature, err)
		}
		return "openpgp " + issuer, nil
	}
	return "", errNotASignature
}

// VerifyCommit checks c's signature and returns the trusted signer who made
// it, or an error wrapping ErrUnsigned, ErrUnknownKey, ErrKeyRevoked,
// ErrKeyExpired, ErrNamespace, ErrBadSignature or ErrMalformedSignature.
// It does not apply the signer's role (see Policy).
func (s *Signers) VerifyCommit(c *object.Commit) (*Signer, error) {
	switch SignatureFormat(c) {
	case "":
		return nil, ErrUnsigned
	case FormatOpenPGP:
		return s.verifyPGP(c)
	case FormatSSH:
		return s.verifySSH(c)
	}
	return nil, errNotASignature
}

var errNotASignature = fmt.Errorf("%w: the gpgsig header holds neither an OpenPGP nor an SSH signature", ErrMalformedSignature)

// verifyPGP verifies with go-git's Commit.Verify against each armored block
// of trusted keys: a block without the issuer says so, and the first that
// has it decides.
func (s *Signers) verifyPGP(c *object.Commit) (*Signer, error) {
	for _, block := range s.blocks {
		e, err := c.Verify(block)
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			continue
		}
		var sg *Signer
		if e != nil {
			sg = s.pgp[fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)]
		}
		switch {
		case err == nil && sg != nil:
			return sg, nil
		case errors.Is(err, pgperrors.ErrKeyRevoked) && sg != nil:
			return nil, fmt.Errorf("%w: %s", ErrKeyRevoked, sg)
		case (errors.Is(err, pgperrors.ErrKeyExpired) || errors.Is(err, pgperrors.ErrSignatureExpired)) && sg != nil:
			return nil, fmt.Errorf("%w: %s: %v", ErrKeyExpired, sg, err)
		case isSignatureError(err):
			return nil, fmt.Errorf("%w: the OpenPGP signature does not match the commit's content (changed after signing?): %v", ErrBadSignature, err)
		case err != nil:
			return nil, fmt.Errorf("%w: OpenPGP: %v", ErrMalformedSignature, err)
		}
	}
	issuer, err := pgpIssuer(c.PGPSignature)
	if err != nil {
		return nil, fmt.Errorf("%w: OpenPGP: %v", ErrMalformedSignature, err)
	}
	return nil, fmt.Errorf("%w: OpenPGP key %s is in no --trust-signer file", ErrUnknownKey, issuer)
}

func isSignatureError(err error) bool {
	var se pgperrors.SignatureError
	return errors.As(err, &se)
}

// pgpIssuer names the key that made an armored OpenPGP signature.
func pgpIssuer(armored string) (string, error) {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return "", err
	}
	p, err := packet.NewReader(block.Body).Next()
	if err != nil {
		return "", err
	}
	sig, ok := p.(*packet.Signature)
	switch {
	case !ok:
		return "", fmt.Errorf("not a signature packet")
	case sig.IssuerFingerprint != nil:
		return fmt.Sprintf("%X", sig.IssuerFingerprint), nil
	case sig.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *sig.IssuerKeyId), nil
	}
	return "", fmt.Errorf("signature names no issuer")
}

// verifySSH verifies an SSHSIG block: the key it names must be trusted, the
// namespace "git", and the signature must match the commit without its
// gpgsig header.
func (s *Signers) verifySSH(c *object.Commit) (*Signer, error) {
	armored := strings.TrimSpace(c.PGPSignature)
	if strings.Count(armored, sshSigBegin) > 1 {
		return nil, fmt.Errorf("%w: more than one SSH signature", ErrMalformedSignature)
	}
	sig, err := sshsig.Unarmor([]byte(armored))
	if err != nil {
		return nil, fmt.Errorf("%w: SSH: %v", ErrMalformedSignature, err)
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	sg := s.ssh[fp]
	if sg == nil {
		return nil, fmt.Errorf("%w: SSH key %s is in no --trust-signer file", ErrUnknownKey, fp)
	}
	if sig.Namespace != Namespace {
		return nil, fmt.Errorf("%w: %q, want %q (signed by %s)", ErrNamespace, sig.Namespace, Namespace, sg)
	}
	if err := sg.allows(Namespace, c.Committer.When); err != nil {
		return nil, err
	}
	msg, err := payload(c)
	if err != nil {
		return nil, err
	}
	if err := sshsig.Verify(bytes.NewReader(msg), sig, sg.ssh, sig.HashAlgorithm, Namespace); err != nil {
		return nil, fmt.Errorf("%w: the SSH signature by %s does not match the commit's content (changed after signing?): %v", ErrBadSignature, sg, err)
	}
	return sg, nil
}

// payload is what a commit signature covers: the commit without gpgsig.
func payload(c *object.Commit) ([]byte, error) {
	var o plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&o); err != nil {
		return nil, fmt.Errorf("encode commit %s: %w", c.Hash, err)
	}
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
