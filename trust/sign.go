package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"github.com/fleetops/reconciler/internal/regfile"
)

// CommitSigner signs the bytes of a commit (without its gpgsig header) and
// returns the armored signature git keeps in that header. It is go-git's
// Signer interface.
type CommitSigner interface {
	Sign(message io.Reader) ([]byte, error)
}

// KeySigner signs commits with a private key held in memory: an SSH key
// (an SSHSIG in namespace "git", SHA-512, what `git commit -S` with
// gpg.format=ssh makes) or an OpenPGP key (a detached armored signature, as
// go-git's CommitOptions.SignKey makes).
type KeySigner struct {
	format string // FormatSSH or FormatOpenPGP
	id     string // "ssh SHA256:..." or "openpgp <fingerprint>"
	ssh    ssh.Signer
	pgp    *openpgp.Entity
}

// Format is "ssh" or "openpgp".
func (k *KeySigner) Format() string { return k.format }

// ID names the key: "ssh SHA256:..." or "openpgp <fingerprint>".
func (k *KeySigner) ID() string { return k.id }

// Sign implements CommitSigner.
func (k *KeySigner) Sign(message io.Reader) ([]byte, error) {
	if k.ssh != nil {
		sig, err := sshsig.Sign(message, k.ssh, sshsig.HashSHA512, Namespace)
		if err != nil {
			return nil, fmt.Errorf("sign with %s: %w", k.id, err)
		}
		return sshsig.Armor(sig), nil
	}
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, k.pgp, message, nil); err != nil {
		return nil, fmt.Errorf("sign with %s: %w", k.id, err)
	}
	return buf.Bytes(), nil
}

// LoadSigningKey reads a private key file for signing commits: OpenSSH (or
// PKCS#8/PEM) ed25519, ECDSA or RSA of at least 2048 bits, or an OpenPGP
// armored private key. passphrase decrypts an encrypted key (nil: none).
func LoadSigningKey(path string, passphrase []byte) (*KeySigner, error) {
	data, err := regfile.ReadFile(path, 1<<20) // never a FIFO or a device
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := ParseSigningKey(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// ParseSigningKey is LoadSigningKey on the file's content.
func ParseSigningKey(data, passphrase []byte) (*KeySigner, error) {
	text := string(data)
	switch {
	case strings.Contains(text, "-----BEGIN PGP PRIVATE KEY BLOCK-----"):
		return parsePGPKey(text, passphrase)
	case strings.Contains(text, "-----BEGIN PGP PUBLIC KEY BLOCK-----"), isKeyType(firstField(text)):
		return nil, errors.New("this is a public key: give the private key")
	}
	return parseSSHKey(data, passphrase)
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

func parseSSHKey(data, passphrase []byte) (*KeySigner, error) {
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if len(passphrase) == 0 {
			return nil, ErrNoPassphrase
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(data, passphrase)
	}
	if err != nil {
		return nil, fmt.Errorf("want an OpenSSH or OpenPGP armored private key: %w", err)
	}
	if err := signingAlgorithm(signer.PublicKey()); err != nil {
		return nil, err
	}
	return &KeySigner{format: FormatSSH, id: "ssh " + ssh.FingerprintSHA256(signer.PublicKey()), ssh: signer}, nil
}

// signingAlgorithm refuses keys whose SSH signatures OpenSSH no longer
// verifies (DSA, RSA under 2048 bits).
func signingAlgorithm(pub ssh.PublicKey) error {
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return nil
	case ssh.KeyAlgoRSA:
		if ck, ok := pub.(ssh.CryptoPublicKey); ok {
			if k, ok := ck.CryptoPublicKey().(interface{ Size() int }); ok && k.Size()*8 >= 2048 {
				return nil
			}
		}
		return errors.New("RSA keys must have at least 2048 bits")
	}
	return fmt.Errorf("SSH key type %s cannot sign commits (want ed25519, ECDSA or RSA)", pub.Type())
}

func parsePGPKey(text string, passphrase []byte) (*KeySigner, error) {
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("OpenPGP private key: %w", err)
	}
	for _, e := range ring {
		if e.PrivateKey == nil {
			continue
		}
		if e.PrivateKey.Encrypted {
			if len(passphrase) == 0 {
				return nil, fmt.Errorf("OpenPGP: %w", ErrNoPassphrase)
			}
			if err := e.DecryptPrivateKeys(passphrase); err != nil {
				return nil, fmt.Errorf("decrypt OpenPGP key: %w", err)
			}
		}
		return &KeySigner{format: FormatOpenPGP, id: fmt.Sprintf("openpgp %X", e.PrimaryKey.Fingerprint), pgp: e}, nil
	}
	return nil, errors.New("the OpenPGP key block holds no private key")
}

// GenerateSSHKey makes an ed25519 key pair for signing commits: the private
// key in OpenSSH format (encrypted with passphrase unless it is empty) and
// the public key as an authorized_keys line ending in comment.
func GenerateSSHKey(comment string, passphrase []byte) (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	var block *pem.Block
	if len(passphrase) == 0 {
		block, err = ssh.MarshalPrivateKey(priv, comment)
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, comment, passphrase)
	}
	if err != nil {
		return nil, nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	if comment != "" {
		line += " " + comment
	}
	return pem.EncodeToMemory(block), []byte(line + "\n"), nil
}
