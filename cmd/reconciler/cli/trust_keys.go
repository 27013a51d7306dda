package cli

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/trust"
)

// runKeygenSSH writes an ed25519 SSH key pair for signing commits.
func runKeygenSSH(e *env, prefix, comment string, prefixGiven bool, output string) error {
	if !prefixGiven {
		prefix = "signing"
	}
	if comment == "" {
		comment = filepath.Base(prefix)
	}
	res, pub, err := writeKeyPair(prefix, func() ([]byte, []byte, error) { return trust.GenerateSSHKey(comment, e.password()) })
	if err != nil {
		return err
	}
	fields := strings.Fields(string(pub))
	res.AllowedSigners = comment + " " + fields[0] + " " + fields[1]
	return printKeygen(e, res, output)
}

// signFlags are the flags of the commands that may sign their commit.
type signFlags struct {
	sign       bool
	signingKey string
}

func (s *signFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&s.sign, "sign", false, "sign the commit: with --signing-key, else as git does (user.signingkey, gpg.format)")
	fl.StringVar(&s.signingKey, "signing-key", "", "private key (OpenSSH or OpenPGP armored) to sign with; implies --sign; password in RECONCILER_PASSWORD")
}

// signer is what signs the commit: nil when not asked to.
func (s *signFlags) signer(ctx context.Context, e *env, id fleetrepo.Identity) (fleetrepo.CommitSigner, error) {
	if s.signingKey != "" {
		k, err := e.loadSigningKey(s.signingKey)
		if err != nil {
			return nil, fmt.Errorf("--signing-key: %w", err)
		}
		return k, nil
	}
	if !s.sign {
		return nil, nil
	}
	return gitSigner(ctx, e, id)
}

// gitSigner signs as `git commit -S` would in the working directory:
// gpg.format (openpgp by default, or ssh), user.signingkey (for openpgp
// default the author), gpg.program or gpg.ssh.program.
func gitSigner(ctx context.Context, e *env, id fleetrepo.Identity) (fleetrepo.CommitSigner, error) {
	format := gitConfig(ctx, e, "gpg.format")
	key := gitConfig(ctx, e, "user.signingkey")
	switch format {
	case "", "openpgp":
		if key == "" {
			key = id.Name + " <" + id.Email + ">"
		}
		prog := gitConfig(ctx, e, "gpg.openpgp.program")
		if prog == "" {
			prog = gitConfig(ctx, e, "gpg.program")
		}
		return &trust.ProgramSigner{Format: trust.FormatOpenPGP, Program: prog, Key: key}, nil
	case "ssh":
		if key == "" {
			return nil, fmt.Errorf("--sign: gpg.format is ssh but user.signingkey is not set: set it (git config user.signingkey ~/.ssh/id_ed25519.pub) or give --signing-key")
		}
		if rest, ok := strings.CutPrefix(key, "~/"); ok {
			key = filepath.Join(e.getenv("HOME"), rest)
		}
		return &trust.ProgramSigner{Format: trust.FormatSSH, Program: gitConfig(ctx, e, "gpg.ssh.program"), Key: key}, nil
	}
	return nil, fmt.Errorf("--sign: gpg.format %q is not supported (want openpgp or ssh), or give --signing-key", format)
}

// gitConfig is `git config --get NAME` in the working directory ("" when unset).
func gitConfig(ctx context.Context, e *env, name string) string {
	cmd := exec.CommandContext(ctx, "git", "config", "--get", name)
	cmd.Dir = e.wd
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
