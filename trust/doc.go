// Package trust decides which commits may move the fleet: the signature
// policy on the tracked branch (docs/design.md, docs/trust.md).
//
// Trusted signers come only from the agent's local configuration, never from
// the fleet repo: LoadSigners reads OpenPGP armored public keys, SSH public
// keys and SSH allowed_signers files (git's gpg.ssh.allowedSignersFile). Each
// signer has a Role: RolePerson may sign any change; RoleAgent (a node's own
// key, with which it signs its rollback commits) may sign only a rollback or
// a pause that an agent itself would write. A line "# reconciler-role: agent"
// in a file makes the signers after it agents.
//
//	signers, err := trust.LoadSigners("people.allowed_signers", "nodes.allowed_signers")
//	policy := &trust.Policy{Signers: signers, Mode: trust.Chain, SpecDir: ""}
//	err = policy.VerifyTip(repo, accepted, tip)   // nil, or a *RefusedError naming the commit
//	results, err := policy.Check(repo, base, head) // a verdict per commit (verify-commits)
//
// Policy implements fleetrepo's TipVerifier: Desired.Fetch calls it before
// it accepts a new tip, and refuses the tip (keeping the last accepted one)
// when it returns an error. Chain, the default, checks every first-parent
// commit between the last accepted tip and the new one, merges included;
// Tip checks the new tip alone (as Flux does). A fresh agent, which has
// accepted nothing yet, checks the tip alone.
//
// OpenPGP signatures are verified with go-git's Commit.Verify (ProtonMail's
// go-crypto underneath: revoked and expired keys are refused); SSH signatures
// with github.com/hiddeco/sshsig in namespace "git", as git and Flux do.
// Refusals wrap the sentinel errors of errors.go (ErrUnsigned,
// ErrUnknownKey, ...), so a caller can branch with errors.Is.
//
// Signing: LoadSigningKey reads an OpenSSH or OpenPGP armored private key and
// returns a CommitSigner whose signature git verify-commit accepts;
// ProgramSigner signs the way git itself does with gpg.format and
// user.signingkey (running gpg or ssh-keygen). GenerateSSHKey makes an
// ed25519 key pair for a node.
package trust
