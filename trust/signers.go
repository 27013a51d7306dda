package trust

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/crypto/ssh"

	"github.com/fleetops/reconciler/internal/regfile"
)

// Role says what a trusted signer may sign.
type Role string

// Roles of signers.
const (
	// RolePerson may sign any change (the default).
	RolePerson Role = "person"
	// RoleAgent may sign only a rollback or a pause an agent would write.
	RoleAgent Role = "agent"
)

// Signer is one trusted key.
type Signer struct {
	// Name is who the key belongs to: the principals of an allowed_signers
	// line, an SSH key's comment, an OpenPGP key's primary user id; else
	// the file's base name.
	Name string
	Role Role
	// Key names the key: "ssh SHA256:..." or "openpgp <fingerprint>".
	Key string
	// Source is where it was read, file:line.
	Source string

	ssh         ssh.PublicKey
	namespaces  []string  // allowed_signers namespaces="..." (nil: any)
	validAfter  time.Time // allowed_signers valid-after (zero: none)
	validBefore time.Time // allowed_signers valid-before (zero: none)
	pgp         *openpgp.Entity
}

func (s *Signer) String() string { return fmt.Sprintf("%s (%s, %s)", s.Name, s.Role, s.Key) }

// Signers is the set of trusted signers.
type Signers struct {
	list   []*Signer
	ssh    map[string]*Signer // by SHA256 fingerprint
	pgp    map[string]*Signer // by primary key fingerprint (hex)
	blocks []string           // armored OpenPGP key blocks, as read, for Commit.Verify
}

// List returns the signers, in the order they were read.
func (s *Signers) List() []*Signer { return append([]*Signer(nil), s.list...) }

// LoadSigners reads the trusted signers from files (see docs/trust.md for
// the format). Every file must hold at least one public key; a private key,
// an empty file or an unreadable line is an error naming file and line.
func LoadSigners(paths ...string) (*Signers, error) {
	if len(paths) == 0 {
		return nil, errors.New("no trusted signer files")
	}
	set := &Signers{ssh: map[string]*Signer{}, pgp: map[string]*Signer{}}
	for _, p := range paths {
		data, err := regfile.ReadFile(p, 16<<20) // never a FIFO or a device
		if err != nil {
			return nil, fmt.Errorf("trusted signers: %w", err)
		}
		if err := set.parse(p, string(data)); err != nil {
			return nil, fmt.Errorf("trusted signers: %w", err)
		}
	}
	return set, nil
}

var (
	roleLine    = regexp.MustCompile(`(?i)^#\s*reconciler-role\s*:\s*(\S*)\s*$`)
	privateLine = regexp.MustCompile(`^-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----`)
	pemLine     = regexp.MustCompile(`^-----BEGIN ([A-Z0-9 ]+)-----`)
)

const (
	pgpBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpEnd   = "-----END PGP PUBLIC KEY BLOCK-----"
)

// parse adds the signers of one file.
func (s *Signers) parse(path, data string) error {
	lines := strings.Split(data, "\n")
	// A private key anywhere is named as such first, even after a block
	// that would be refused for another reason (openssl ecparam -genkey
	// writes EC PARAMETERS before the EC PRIVATE KEY).
	for i, line := range lines {
		if privateLine.MatchString(strings.TrimSpace(line)) {
			return fmt.Errorf("%s:%d: this is a private key; a --trust-signer file takes public keys only (ssh-keygen -y -f KEY, gpg --export --armor ID)", path, i+1)
		}
	}
	role, before := RolePerson, len(s.list)
	for i := 0; i < len(lines); i++ {
		line, at := strings.TrimSpace(lines[i]), fmt.Sprintf("%s:%d", path, i+1)
		switch {
		case roleLine.MatchString(line):
			r := Role(strings.ToLower(roleLine.FindStringSubmatch(line)[1]))
			if r != RolePerson && r != RoleAgent {
				return fmt.Errorf("%s: role %q: want person or agent", at, r)
			}
			role = r
		case line == "" || strings.HasPrefix(line, "#"):
		case line == pgpBegin:
			end := blockEnd(lines, i)
			if end < 0 {
				return fmt.Errorf("%s: OpenPGP key block without %s", at, pgpEnd)
			}
			if err := s.addPGP(at, role, strings.Join(lines[i:end+1], "\n")); err != nil {
				return err
			}
			i = end
		case pemLine.MatchString(line):
			return fmt.Errorf("%s: a PEM %q block is not an OpenPGP or SSH public key (release keys go to --trust-key)", at, pemLine.FindStringSubmatch(line)[1])
		default:
			if err := s.addSSH(at, path, role, line); err != nil {
				return err
			}
		}
	}
	if len(s.list) == before {
		return fmt.Errorf("%s: no public key in it (want OpenPGP armored public keys, SSH public keys or an allowed_signers file)", path)
	}
	return nil
}

func blockEnd(lines []string, from int) int {
	for j := from + 1; j < len(lines); j++ {
		if strings.TrimSpace(lines[j]) == pgpEnd {
			return j
		}
	}
	return -1
}

// addPGP adds every key of one armored public key block.
func (s *Signers) addPGP(at string, role Role, block string) error {
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(block))
	if err != nil {
		return fmt.Errorf("%s: OpenPGP public key block: %w", at, err)
	}
	for _, e := range ring {
		fp := fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
		sg := &Signer{Name: pgpName(e, fp), Role: role, Key: "openpgp " + fp, Source: at, pgp: e}
		if err := s.add(sg, s.pgp, fp); err != nil {
			return err
		}
	}
	s.blocks = append(s.blocks, block)
	return nil
}

func pgpName(e *openpgp.Entity, fp string) string {
	if id := e.PrimaryIdentity(); id != nil && id.Name != "" {
		return id.Name
	}
	return fp
}

// add records a signer under its key id; the same key twice must have the
// same role.
func (s *Signers) add(sg *Signer, byKey map[string]*Signer, id string) error {
	if old, ok := byKey[id]; ok {
		if old.Role != sg.Role {
			return fmt.Errorf("%s: key %s is already trusted as %s at %s", sg.Source, sg.Key, old.Role, old.Source)
		}
		return nil
	}
	byKey[id] = sg
	s.list = append(s.list, sg)
	return nil
}

// addSSH adds one SSH line: a public key ("ssh-ed25519 AAAA... comment", as
// in a .pub file) or an allowed_signers entry ("principals [options] key").
func (s *Signers) addSSH(at, path string, role Role, line string) error {
	sg := &Signer{Role: role, Source: at}
	if first, _, _ := strings.Cut(line, " "); isKeyType(first) {
		pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return fmt.Errorf("%s: SSH public key: %w", at, err)
		}
		sg.ssh, sg.Name = pub, comment
		if sg.Name == "" {
			sg.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
	} else if err := sg.parseAllowedSigner(at, line); err != nil {
		return err
	}
	fp := ssh.FingerprintSHA256(sg.ssh)
	sg.Key = "ssh " + fp
	return s.add(sg, s.ssh, fp)
}

// isKeyType reports whether s names an SSH public key algorithm.
func isKeyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") ||
		strings.HasPrefix(s, "sk-ssh-") || strings.HasPrefix(s, "sk-ecdsa-")
}
