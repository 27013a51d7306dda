package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/internal/regfile"
	"github.com/fleetops/reconciler/signing"
	"github.com/fleetops/reconciler/trust"
)

// signingCommands builds keygen, sign, verify (this file) and release
// (release_cmd.go).
func signingCommands(e *env) []*cobra.Command {
	return []*cobra.Command{keygenCmd(e), signCmd(e), verifyCmd(e), releaseCmd(e)}
}

// password returns the private key password: RECONCILER_PASSWORD, else
// COSIGN_PASSWORD, else empty (allowed, as with cosign).
// loadSigningKey loads a --signing-key, decrypted with password(); an
// encrypted key without one says where the passphrase goes.
func (e *env) loadSigningKey(path string) (*trust.KeySigner, error) {
	k, err := trust.LoadSigningKey(path, e.password())
	if errors.Is(err, trust.ErrNoPassphrase) {
		return nil, fmt.Errorf("%w: set RECONCILER_PASSWORD", err)
	}
	return k, err
}

func (e *env) password() []byte {
	if p := e.getenv("RECONCILER_PASSWORD"); p != "" {
		return []byte(p)
	}
	return []byte(e.getenv("COSIGN_PASSWORD"))
}

func keygenCmd(e *env) *cobra.Command {
	var prefix, comment, output string
	var sshKey bool
	c := &cobra.Command{
		Use:   "keygen",
		Short: "Make a cosign-compatible ECDSA P-256 key pair (NAME.key, NAME.pub), or with --ssh an ed25519 SSH key pair for signing commits",
		Long: `keygen writes NAME.key, encrypted as cosign does (ENCRYPTED SIGSTORE PRIVATE
KEY) with the password in RECONCILER_PASSWORD or COSIGN_PASSWORD (empty is
allowed), and NAME.pub. It never overwrites existing files.

With --ssh it writes an ed25519 SSH key pair for signing commits instead (a
node's --signing-key, or a person's): NAME.key in OpenSSH format (encrypted
with the same password unless it is empty) and NAME.pub, and prints the
allowed_signers line that trusts it (docs/trust.md).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if sshKey {
				return runKeygenSSH(e, prefix, comment, c.Flags().Changed("output-key-prefix"), output)
			}
			return runKeygen(e, prefix, output)
		},
	}
	c.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "write `NAME`.key and NAME.pub (with --ssh, default signing)")
	c.Flags().BoolVar(&sshKey, "ssh", false, "make an ed25519 SSH key pair for signing commits")
	c.Flags().StringVar(&comment, "comment", "", "with --ssh: the key's comment and principal (default NAME)")
	registerOutput(c, &output)
	return c
}

// keygenResult is what keygen prints with --output json.
type keygenResult struct {
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
	// AllowedSigners is the allowed_signers line that trusts an SSH key.
	AllowedSigners string `json:"allowedSigners,omitempty"`
}

func runKeygen(e *env, prefix, output string) error {
	res, _, err := writeKeyPair(prefix, func() ([]byte, []byte, error) { return signing.GenerateKeyPair(e.password()) })
	if err != nil {
		return err
	}
	return printKeygen(e, res, output)
}

func printKeygen(e *env, res keygenResult, output string) error {
	if output == "json" {
		return writeJSON(e, res)
	}
	fmt.Fprintf(e.stdout, "Private key written to %s\nPublic key written to %s\n", res.PrivateKey, res.PublicKey)
	if res.AllowedSigners != "" {
		fmt.Fprintf(e.stdout, "allowed_signers line (under \"# reconciler-role: agent\" for a node's key):\n%s\n", res.AllowedSigners)
	}
	return nil
}

// writeKeyPair writes PREFIX.key (0600) and PREFIX.pub from gen, never
// over an existing file, and returns where and the public key.
func writeKeyPair(prefix string, gen func() (priv, pub []byte, err error)) (keygenResult, []byte, error) {
	res := keygenResult{PrivateKey: prefix + ".key", PublicKey: prefix + ".pub"}
	for _, p := range []string{res.PrivateKey, res.PublicKey} {
		if _, err := os.Lstat(p); err == nil {
			return res, nil, fmt.Errorf("keygen: %s already exists; remove it or choose another --output-key-prefix", p)
		}
	}
	priv, pub, err := gen()
	if err != nil {
		return res, nil, fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(res.PrivateKey, priv, 0o600); err != nil {
		return res, nil, fmt.Errorf("keygen: %w", err)
	}
	if err := writeNew(res.PublicKey, pub, 0o644); err != nil {
		return res, nil, fmt.Errorf("keygen: %w", err)
	}
	return res, pub, nil
}

func signCmd(e *env) *cobra.Command {
	var key, out, output string
	var ph bool
	c := &cobra.Command{
		Use:   "sign --key KEY FILE",
		Short: "Sign FILE as `cosign sign-blob --key` does; writes FILE.sig",
		Long: `sign writes the base64 signature of FILE to FILE.sig (or --output-signature),
the same bytes 'cosign sign-blob --key KEY --output-signature' writes, so
'cosign verify-blob --key PUB --signature FILE.sig --insecure-ignore-tlog FILE'
accepts it. The key password comes from RECONCILER_PASSWORD or COSIGN_PASSWORD.

ECDSA keys sign the SHA-256 of FILE, read as a stream. ed25519 keys sign plain
ed25519 (FILE up to 32 MiB, held in memory) unless --ed25519ph is given.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if key == "" {
				return &usageError{errors.New("sign: --key is required")}
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if out == "" {
				out = args[0] + ".sig"
			}
			return runSign(e, key, args[0], out, ph, output)
		},
	}
	c.Flags().StringVar(&key, "key", "", "private key `KEY` (cosign format)")
	c.Flags().StringVar(&out, "output-signature", "", "write the signature to `PATH` (default FILE.sig)")
	c.Flags().BoolVar(&ph, "ed25519ph", false, "sign ed25519 keys pre-hashed (streaming; what cosign signs for its transparency log)")
	registerOutput(c, &output)
	return c
}

// signResult is what sign prints with --output json.
type signResult struct {
	File      string `json:"file"`
	Signature string `json:"signature"` // the file written
}

func runSign(e *env, keyPath, file, out string, ph bool, output string) error {
	// The file first: a path that is no regular file is refused before the
	// key's password is asked for and its (slow, scrypt) decryption runs.
	f, err := regfile.Open(file)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	defer f.Close()
	pemBytes, err := regfile.ReadFile(keyPath, 1<<20)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	key, err := signing.LoadPrivateKey(pemBytes, e.password())
	if err != nil {
		return fmt.Errorf("sign: key %s: %w", keyPath, err)
	}
	key.Ed25519ph = ph
	sig, err := signing.Sign(f, key)
	if err != nil {
		return fmt.Errorf("sign %s: %w", file, err)
	}
	if err := writeAtomic(out, sig, 0o644); err != nil {
		return fmt.Errorf("sign %s: %w", file, err)
	}
	if output == "json" {
		return writeJSON(e, signResult{File: file, Signature: out})
	}
	fmt.Fprintf(e.stdout, "Wrote signature to %s\n", out)
	return nil
}

func verifyCmd(e *env) *cobra.Command {
	var keys []string
	var sigPath, output string
	c := &cobra.Command{
		Use:   "verify --key PUB [--key PUB...] --signature SIG FILE",
		Short: "Check a cosign signature of FILE against trusted public keys",
		Long: `verify exits 0 when one of the --key public keys (ECDSA or ed25519, as cosign
makes them) verifies SIG over FILE, and 1 with the reason otherwise. ed25519
signatures are accepted pre-hashed (ed25519ph, cosign's) and plain.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(keys) == 0 || sigPath == "" {
				return &usageError{errors.New("verify: --key and --signature are required")}
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			return runVerify(e, keys, sigPath, args[0], output)
		},
	}
	c.Flags().StringArrayVar(&keys, "key", nil, "trusted public key `PUB` (repeatable)")
	c.Flags().StringVar(&sigPath, "signature", "", "base64 signature file `SIG`")
	registerOutput(c, &output)
	return c
}

// verifyResult is what verify prints with --output json (a failure is the
// JSON error object, exit 1).
type verifyResult struct {
	File     string `json:"file"`
	Verified bool   `json:"verified"`
	Key      string `json:"key"` // the key that verified it
}

func runVerify(e *env, keyPaths []string, sigPath, file, output string) error {
	keys, sig, err := loadVerifyInputs(keyPaths, sigPath)
	if err != nil {
		return fmt.Errorf("verify %s: %w", file, err)
	}
	f, err := regfile.Open(file)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	id, err := keys.Verify(f, sig)
	if err != nil {
		return fmt.Errorf("verify %s with %s: %w", file, sigPath, err)
	}
	if output == "json" {
		return writeJSON(e, verifyResult{File: file, Verified: true, Key: id})
	}
	fmt.Fprintf(e.stdout, "Verified OK (key %s)\n", id)
	return nil
}

func loadVerifyInputs(keyPaths []string, sigPath string) (*signing.KeySet, []byte, error) {
	keys, err := signing.LoadKeySet(keyPaths...)
	if err != nil {
		return nil, nil, err
	}
	sig, err := regfile.ReadFile(sigPath, signing.MaxSignatureSize)
	if err != nil {
		return nil, nil, fmt.Errorf("read signature: %w", err)
	}
	return keys, sig, nil
}

// writeNew creates path, failing if it exists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeAtomic replaces path with data through a temporary file in the same
// directory.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return replaceFile(path, perm, func(f *os.File) error {
		_, err := bytes.NewReader(data).WriteTo(f)
		return err
	})
}

// replaceFile writes path through a temporary file: write, sync, close, rename.
func replaceFile(path string, perm os.FileMode, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = write(tmp)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
