package signing

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The vectors in testdata/cosign-v2.6.5 were made by a real cosign v2.6.5
// (and openssl for plain ed25519) with testdata/make-vectors.sh.
const vectors = "testdata/cosign-v2.6.5"

const vectorPassword = "vector-password"

func readVector(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectors, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCosignVectorsVerify(t *testing.T) {
	keys, err := LoadKeySet(filepath.Join(vectors, "ecdsa.pub"), filepath.Join(vectors, "ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	blob := readVector(t, "blob.txt")
	for sig, wantKey := range map[string]string{
		"ecdsa.sig":     "ecdsa.pub",   // cosign sign-blob, ECDSA P-256
		"ed25519ph.sig": "ed25519.pub", // cosign sign-blob, ed25519 pre-hashed
		"ed25519.sig":   "ed25519.pub", // openssl, plain ed25519
	} {
		t.Run(sig, func(t *testing.T) {
			got, err := keys.Verify(bytes.NewReader(blob), readVector(t, sig))
			if err != nil || got != wantKey {
				t.Fatalf("Verify = %q, %v; want %q", got, err, wantKey)
			}
			tampered := append(bytes.Clone(blob), '!')
			_, err = keys.Verify(bytes.NewReader(tampered), readVector(t, sig))
			if !errors.Is(err, ErrNoMatchingKey) {
				t.Fatalf("tampered blob: %v, want ErrNoMatchingKey", err)
			}
		})
	}
}

func TestCosignPrivateKeysSign(t *testing.T) {
	t.Parallel() // scrypt or 32 MiB: slow under -race
	keys, err := LoadKeySet(filepath.Join(vectors, "ecdsa.pub"), filepath.Join(vectors, "ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	blob := readVector(t, "blob.txt")
	for _, name := range []string{"ecdsa.key", "ed25519.key"} {
		priv, err := LoadPrivateKey(readVector(t, name), []byte(vectorPassword))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sig, err := Sign(bytes.NewReader(blob), priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Verify(bytes.NewReader(blob), sig); err != nil {
			t.Errorf("%s: our signature does not verify: %v", name, err)
		}
	}
	if _, err := LoadPrivateKey(readVector(t, "ecdsa.key"), []byte("wrong")); err == nil {
		t.Error("wrong password accepted")
	}
}

// ed25519 is deterministic: our ed25519ph and plain signatures must equal
// cosign's and openssl's byte for byte.
func TestEd25519SignaturesMatchCosignAndOpenSSL(t *testing.T) {
	t.Parallel() // scrypt or 32 MiB: slow under -race
	priv, err := LoadPrivateKey(readVector(t, "ed25519.key"), []byte(vectorPassword))
	if err != nil {
		t.Fatal(err)
	}
	blob := readVector(t, "blob.txt")
	plain, err := Sign(bytes.NewReader(blob), priv)
	if err != nil {
		t.Fatal(err)
	}
	priv.Ed25519ph = true
	ph, err := Sign(bytes.NewReader(blob), priv)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.TrimSpace(readVector(t, "ed25519.sig")); !bytes.Equal(plain, want) {
		t.Errorf("plain ed25519:\n got %s\nwant %s (openssl)", plain, want)
	}
	if want := bytes.TrimSpace(readVector(t, "ed25519ph.sig")); !bytes.Equal(ph, want) {
		t.Errorf("ed25519ph:\n got %s\nwant %s (cosign)", ph, want)
	}
}
