package trust

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// Interop with the real tools: commits that git signs (gpg.format=ssh with
// a key from ssh-keygen, and gpg) verify here, and commits reconciler signs
// pass `git verify-commit`.

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// sshKeygen makes an ed25519 key with ssh-keygen; it returns the private
// key's path and the public key line.
func sshKeygen(t *testing.T, comment string) (string, string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id_ed25519")
	run(t, "", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(pub))
}

// gnupg is a GNUPGHOME of the test's own with one passphrase-less ed25519
// key for uid; its agent is stopped when the test ends.
type gnupg struct {
	home string
	env  []string
}

func newGnuPG(t *testing.T, uid string) *gnupg {
	t.Helper()
	home := t.TempDir()
	if len(home)+len("/S.gpg-agent.browser") > 107 { // gpg-agent's sockets live there; a Unix socket path has at most 107 bytes
		t.Fatalf("GNUPGHOME %s is too long for gpg-agent's sockets: shorten the test's name", home)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gnupg{home: home, env: append(gittest.Env(), "GNUPGHOME="+home)}
	t.Cleanup(func() { // before TempDir's own cleanup removes the directory
		if out, err := exec.Command("gpgconf", "--homedir", home, "--kill", "all").CombinedOutput(); err != nil {
			t.Logf("stop gpg-agent: %v: %s", err, out)
		}
	})
	run(t, "", g.env, "gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
	return g
}

func (g *gnupg) export(t *testing.T, uid string, secret bool) string {
	t.Helper()
	what := "--export"
	if secret {
		what = "--export-secret-keys"
	}
	return run(t, "", g.env, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--armor", what, uid) + "\n"
}

// gitRepo is a work tree with one commit of the fleet, made by git.
func gitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gittest.Git(t, dir, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "fleet.cue"), []byte(fleetCUE("1.0.0", "3.0.0", false)), 0o644); err != nil {
		t.Fatal(err)
	}
	gittest.Git(t, dir, "add", "-A")
	return dir
}

func headCommit(t *testing.T, dir string) (*git.Repository, plumbing.Hash) {
	t.Helper()
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	return repo, head.Hash()
}

func verifyHead(t *testing.T, dir, trusted, wantSigner string) {
	t.Helper()
	signers, err := LoadSigners(writeFile(t, "trusted", trusted))
	if err != nil {
		t.Fatal(err)
	}
	repo, h := headCommit(t, dir)
	c, err := repo.CommitObject(h)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := signers.VerifyCommit(c)
	if err != nil || sg.Name != wantSigner {
		t.Fatalf("git's signed commit: signer %v, %v", sg, err)
	}
	// The same commit with its message changed no longer verifies.
	cp := *c
	cp.Message += "tampered\n"
	if _, err := signers.VerifyCommit(&cp); err == nil {
		t.Fatal("a tampered copy of git's signed commit verifies")
	}
}

func TestGitSignedCommitsVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git, ssh-keygen and gpg")
	}
	t.Run("ssh", func(t *testing.T) {
		key, pub := sshKeygen(t, "ada@laptop")
		dir := gitRepo(t)
		gittest.Git(t, dir, "-c", "gpg.format=ssh", "-c", "user.signingkey="+key, "commit", "-q", "-S", "-m", "signed by git with ssh")
		verifyHead(t, dir, "ada@example.com "+pub+"\n", "ada@example.com")
	})
	t.Run("gpg", func(t *testing.T) {
		g := newGnuPG(t, "Ada <ada@example.com>")
		dir := gitRepo(t)
		cmd := exec.Command("git", "-c", "user.signingkey=ada@example.com", "commit", "-q", "-S", "-m", "signed by git with gpg")
		cmd.Dir, cmd.Env = dir, g.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git commit -S: %v\n%s", err, out)
		}
		verifyHead(t, dir, g.export(t, "ada@example.com", false), "Ada <ada@example.com>")
	})
}

// commitSigned writes a version bump to a bare repo through fleetrepo with
// signer and returns the repo and commit.
func commitSigned(t *testing.T, signer fleetrepo.CommitSigner) (string, plumbing.Hash) {
	t.Helper()
	bare := gittest.NewBare(t, files("1.0.0", "3.0.0", false))
	ctx := t.Context()
	d, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: bare, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := d.SetVersion(ctx, plumbing.ZeroHash, "web", "1.1.0", "", fleetrepo.Identity{Name: "Ada", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	gittest.Git(t, bare, "fsck", "--strict")
	return bare, h
}

func TestReconcilerSignedCommitsPassGitVerifyCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git, ssh-keygen and gpg")
	}
	t.Run("ssh key from ssh-keygen", func(t *testing.T) {
		key, pub := sshKeygen(t, "node-1")
		signer, err := LoadSigningKey(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		bare, h := commitSigned(t, signer)
		allowed := writeFile(t, "allowed_signers", "node-1 "+pub+"\n")
		gittest.Git(t, bare, "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", h.String())
		_, other := sshKeygen(t, "other")
		wrong := writeFile(t, "other_signers", "node-1 "+other+"\n")
		if _, err := gittest.RunGit(bare, "-c", "gpg.ssh.allowedSignersFile="+wrong, "verify-commit", h.String()); err == nil {
			t.Fatal("git verify-commit accepts the commit with another key trusted")
		}
	})
	t.Run("ssh key from reconciler keygen", func(t *testing.T) {
		priv, pub, err := GenerateSSHKey("node-2", nil)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ParseSigningKey(priv, nil)
		if err != nil {
			t.Fatal(err)
		}
		bare, h := commitSigned(t, signer)
		allowed := writeFile(t, "allowed_signers", "node-2 "+string(pub))
		gittest.Git(t, bare, "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", h.String())
	})
	t.Run("openpgp key from gpg", func(t *testing.T) {
		g := newGnuPG(t, "Ada <ada@example.com>")
		signer, err := ParseSigningKey([]byte(g.export(t, "ada@example.com", true)), nil)
		if err != nil {
			t.Fatal(err)
		}
		bare, h := commitSigned(t, signer)
		cmd := exec.Command("git", "verify-commit", h.String())
		cmd.Dir, cmd.Env = bare, g.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git verify-commit: %v\n%s", err, out)
		}
	})
}

// TestProgramSigner signs through gpg and ssh-keygen, as git does with
// gpg.format and user.signingkey, and checks the result both ways.
func TestProgramSigner(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git, ssh-keygen and gpg")
	}
	t.Run("ssh-keygen", func(t *testing.T) {
		key, pub := sshKeygen(t, "ada")
		bare, h := commitSigned(t, &ProgramSigner{Format: FormatSSH, Key: key})
		allowed := writeFile(t, "allowed_signers", "ada "+pub+"\n")
		gittest.Git(t, bare, "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", h.String())
		signers, err := LoadSigners(allowed)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := git.PlainOpen(bare)
		if err != nil {
			t.Fatal(err)
		}
		if err := (&Policy{Signers: signers}).VerifyTip(repo, plumbing.ZeroHash, h); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gpg", func(t *testing.T) {
		g := newGnuPG(t, "Ada <ada@example.com>")
		bare, h := commitSigned(t, &ProgramSigner{Format: FormatOpenPGP, Key: "ada@example.com", Env: g.env})
		cmd := exec.Command("git", "verify-commit", h.String())
		cmd.Dir, cmd.Env = bare, g.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git verify-commit: %v\n%s", err, out)
		}
	})
	t.Run("gpg without the key", func(t *testing.T) {
		g := newGnuPG(t, "Ada <ada@example.com>")
		s := &ProgramSigner{Format: FormatOpenPGP, Key: "nobody@example.com", Env: g.env}
		if _, err := s.Sign(strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "gpg -bsau nobody@example.com") {
			t.Fatalf("err = %v", err)
		}
	})
}
