// Package signing makes and checks cosign-compatible blob signatures: the
// base64 signature that `cosign sign-blob --key` writes and
// `cosign verify-blob --key` accepts. It uses github.com/sigstore/sigstore,
// never cosign's own packages.
//
// Verification starts from a [KeySet], the public keys an agent trusts (from
// its local configuration, never from the fleet repository):
//
//	keys, err := signing.LoadKeySet("/etc/reconciler/keys/cosign.pub", "/etc/reconciler/keys/ops.pub")
//	keyID, err := keys.Verify(artifact, sig)
//
// Supported keys are ECDSA (P-256 as made by `cosign generate-key-pair`,
// signature over SHA-256) and ed25519. An ed25519 signature is accepted in
// both forms cosign makes: ed25519ph (pre-hashed with SHA-512, what cosign
// signs when it uploads to a transparency log) and plain ed25519 (what
// `cosign sign-blob --tlog-upload=false` signs, and what
// `cosign verify-blob --key` checks).
//
// Verification streams: ECDSA and ed25519ph need only a digest, computed while
// the message is read, so memory stays constant whatever the size. Plain
// ed25519 signs the whole message, so it can only be checked when the whole
// message is held in memory: a [Digester] keeps at most [MaxPlainEd25519Size]
// bytes for it, and only when the key set holds an ed25519 key. Larger
// messages must be signed with ECDSA or ed25519ph.
//
// A caller that already reads the message for another reason (downloading,
// checking a sha256 pin) writes it into [KeySet.NewDigester] and calls
// [KeySet.VerifyDigest], so the message is read once.
//
// Signing: [GenerateKeyPair] writes a P-256 key pair encrypted the way cosign
// does (ENCRYPTED SIGSTORE PRIVATE KEY); [LoadPrivateKey] reads that format,
// cosign's older ENCRYPTED COSIGN PRIVATE KEY and unencrypted PKCS#8; [Sign]
// returns the base64 signature.
package signing
