package trust

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ProgramSigner signs commits the way git itself does with gpg.format and
// user.signingkey: by running gpg (`gpg --status-fd=2 -bsau KEY`) or
// ssh-keygen (`ssh-keygen -Y sign -n git -f KEY`), so keys that live in
// gpg-agent, ssh-agent or a hardware token work as they do for git commit -S.
type ProgramSigner struct {
	Format string // FormatOpenPGP or FormatSSH
	// Program is gpg.program (gpg.ssh.program for ssh); default gpg or ssh-keygen.
	Program string
	// Key is user.signingkey: an OpenPGP key id or user id; for ssh a key
	// file (private, or public with the private half in ssh-agent) or a
	// literal "key::ssh-ed25519 AAAA..." held by ssh-agent.
	Key string
	// Env is the programs' environment (nil: this process's).
	Env []string
}

// Sign implements CommitSigner.
func (p *ProgramSigner) Sign(message io.Reader) ([]byte, error) {
	if p.Format == FormatSSH {
		return p.signSSH(message)
	}
	return p.signGPG(message)
}

func (p *ProgramSigner) program(def string) string {
	if p.Program != "" {
		return p.Program
	}
	return def
}

func (p *ProgramSigner) signGPG(message io.Reader) ([]byte, error) {
	prog := p.program("gpg")
	cmd := exec.Command(prog, "--status-fd=2", "-bsau", p.Key)
	cmd.Env, cmd.Stdin = p.Env, message
	var out, status bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &status
	err := cmd.Run()
	if err != nil || !strings.Contains(status.String(), "[GNUPG:] SIG_CREATED ") {
		return nil, fmt.Errorf("sign with %s -bsau %s: %v: %s", prog, p.Key, err, strings.TrimSpace(status.String()))
	}
	return out.Bytes(), nil
}

func (p *ProgramSigner) signSSH(message io.Reader) ([]byte, error) {
	prog := p.program("ssh-keygen")
	dir, err := os.MkdirTemp("", "reconciler-sign-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	buf := filepath.Join(dir, "commit")
	if err := writeFrom(buf, message); err != nil {
		return nil, err
	}
	args := []string{"-Y", "sign", "-n", Namespace, "-f", p.Key}
	if literal, ok := literalKey(p.Key); ok {
		keyFile := filepath.Join(dir, "key.pub")
		if err := os.WriteFile(keyFile, []byte(literal+"\n"), 0o600); err != nil {
			return nil, err
		}
		args = []string{"-Y", "sign", "-n", Namespace, "-f", keyFile, "-U"}
	}
	cmd := exec.Command(prog, append(args, buf)...)
	cmd.Env = p.Env
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sign with %s %s: %v: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return os.ReadFile(buf + ".sig")
}

// literalKey reports a user.signingkey that is the key itself, as git reads it.
func literalKey(key string) (string, bool) {
	if k, ok := strings.CutPrefix(key, "key::"); ok {
		return k, true
	}
	return key, strings.HasPrefix(key, "ssh-")
}

func writeFrom(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
