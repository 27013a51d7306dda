package cli

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/trust"
)

// TestGitSignerReadsGitConfig: --sign without a key signs as git commit -S
// would in the working directory: gpg.format, user.signingkey, programs.
func TestGitSignerReadsGitConfig(t *testing.T) {
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	ada := fleetrepo.Identity{Name: "Ada Lovelace", Email: "ada@example.com"}
	for _, tc := range []struct {
		name   string
		config []string
		want   trust.ProgramSigner
		err    string
	}{
		{"openpgp by default, the author as key", nil,
			trust.ProgramSigner{Format: "openpgp", Key: "Ada Lovelace <ada@example.com>"}, ""},
		{"openpgp with a key and gpg.program", []string{"user.signingkey", "0xDEADBEEF", "gpg.program", "gpg2"},
			trust.ProgramSigner{Format: "openpgp", Program: "gpg2", Key: "0xDEADBEEF"}, ""},
		{"ssh with ~ expanded", []string{"gpg.format", "ssh", "user.signingkey", "~/.ssh/id_ed25519"},
			trust.ProgramSigner{Format: "ssh", Key: "/home/ada/.ssh/id_ed25519"}, ""},
		{"ssh without a key", []string{"gpg.format", "ssh"}, trust.ProgramSigner{}, "user.signingkey is not set"},
		{"x509", []string{"gpg.format", "x509"}, trust.ProgramSigner{}, `gpg.format "x509" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("git", "init", "-q", dir).CombinedOutput(); err != nil {
				t.Fatalf("git init: %v: %s", err, out)
			}
			for i := 0; i+1 < len(tc.config); i += 2 {
				if out, err := exec.Command("git", "-C", dir, "config", tc.config[i], tc.config[i+1]).CombinedOutput(); err != nil {
					t.Fatalf("git config: %v: %s", err, out)
				}
			}
			e := &env{wd: dir, getenv: func(k string) string {
				if k == "HOME" {
					return "/home/ada"
				}
				return ""
			}}
			s, err := gitSigner(context.Background(), e, ada)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := *s.(*trust.ProgramSigner); got.Format != tc.want.Format || got.Key != tc.want.Key || got.Program != tc.want.Program {
				t.Fatalf("signer %+v, want %+v", got, tc.want)
			}
		})
	}
}
