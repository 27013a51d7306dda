package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// newKey returns an unencrypted private key (scrypt is slow under -race)
// and its public PEM.
func newKey(t *testing.T, ed bool) (*PrivateKey, []byte) {
	t.Helper()
	var priv any
	var err error
	if ed {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := cryptoutils.MarshalPrivateKeyToPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadPrivateKey(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicPEM()
	if err != nil {
		t.Fatal(err)
	}
	return k, pub
}

func TestGenerateKeyPairEmptyPassword(t *testing.T) {
	t.Parallel() // scrypt or 32 MiB: slow under -race
	privPEM, pubPEM, err := GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(privPEM, []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")) {
		t.Fatalf("private key is not cosign's encrypted format:\n%s", privPEM)
	}
	priv, err := LoadPrivateKey(privPEM, []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	keys := &KeySet{}
	if err := keys.Add("k.pub", pubPEM); err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(strings.NewReader("msg"), priv)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := keys.Verify(strings.NewReader("msg"), sig); err != nil || id != "k.pub" {
		t.Fatalf("Verify = %q, %v", id, err)
	}
}

func TestKeySetPicksTheMatchingKey(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	var privs []*PrivateKey
	for i, ed := range []bool{false, true, false} {
		k, pub := newKey(t, ed)
		p := filepath.Join(dir, []string{"cosign.pub", "ed.pub", "ops.pub"}[i])
		os.WriteFile(p, pub, 0o644)
		paths, privs = append(paths, p), append(privs, k)
	}
	keys, err := LoadKeySet(paths...)
	if err != nil {
		t.Fatal(err)
	}
	privs[1].Ed25519ph = true
	for i, k := range privs {
		sig, _ := Sign(strings.NewReader("release"), k)
		id, err := keys.Verify(strings.NewReader("release"), sig)
		if err != nil || id != filepath.Base(paths[i]) {
			t.Errorf("key %d: Verify = %q, %v", i, id, err)
		}
	}
	stranger, _ := newKey(t, false)
	sig, _ := Sign(strings.NewReader("release"), stranger)
	_, err = keys.Verify(strings.NewReader("release"), sig)
	if !errors.Is(err, ErrNoMatchingKey) || !strings.Contains(err.Error(), "(cosign.pub, ed.pub, ops.pub)") {
		t.Errorf("stranger's signature: %v", err)
	}
}

func TestMalformedSignatures(t *testing.T) {
	k, pub := newKey(t, false)
	keys := &KeySet{}
	keys.Add("cosign.pub", pub)
	good, _ := Sign(strings.NewReader("m"), k)
	for name, sig := range map[string]string{
		"empty":      "",
		"blank":      " \n",
		"not base64": "%%%",
		"truncated":  string(good[:len(good)/2]),
		"garbage":    "aGVsbG8gd29ybGQ=",
	} {
		_, err := keys.Verify(strings.NewReader("m"), []byte(sig))
		if !errors.Is(err, ErrMalformedSignature) {
			t.Errorf("%s: %v, want ErrMalformedSignature", name, err)
		}
	}
	if _, err := keys.Verify(strings.NewReader("m"), append(good, '\n')); err != nil {
		t.Errorf("trailing newline refused: %v", err)
	}
}

func TestPlainEd25519IsBounded(t *testing.T) {
	t.Parallel() // scrypt or 32 MiB: slow under -race
	k, pub := newKey(t, true)
	keys := &KeySet{}
	keys.Add("ed.pub", pub)
	big := bytes.Repeat([]byte{'x'}, MaxPlainEd25519Size+1)
	if _, err := Sign(bytes.NewReader(big), k); err == nil {
		t.Error("plain ed25519 signed a message over the limit")
	}
	k.Ed25519ph = true
	sig, err := Sign(bytes.NewReader(big), k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(bytes.NewReader(big), sig); err != nil {
		t.Errorf("ed25519ph over the plain limit: %v", err)
	}
	_, err = keys.Verify(bytes.NewReader(append(big, 'y')), sig)
	if !errors.Is(err, ErrNoMatchingKey) || !strings.Contains(err.Error(), "plain ed25519 not checked") {
		t.Errorf("tampered big message: %v", err)
	}
}

func TestLoadKeySetErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pub")
	os.WriteFile(bad, []byte("not pem"), 0o644)
	for _, paths := range [][]string{nil, {filepath.Join(dir, "missing.pub")}, {bad}} {
		if _, err := LoadKeySet(paths...); err == nil {
			t.Errorf("LoadKeySet(%v) accepted", paths)
		}
	}
}
