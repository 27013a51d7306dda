package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/signing"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// testKey is a fresh ECDSA P-256 key pair and the key set trusting it.
type testKey struct {
	priv *signing.PrivateKey
	pub  []byte
	keys *signing.KeySet
}

func newTestKey(t testing.TB, id string) testKey {
	t.Helper()
	// Unencrypted PKCS#8: scrypt would cost seconds under -race.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := cryptoutils.MarshalPrivateKeyToPEM(ec)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := signing.LoadPrivateKey(privPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := priv.PublicPEM()
	if err != nil {
		t.Fatal(err)
	}
	keys := &signing.KeySet{}
	if err := keys.Add(id, pubPEM); err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, pub: pubPEM, keys: keys}
}

func (k testKey) sign(t testing.TB, data []byte) []byte {
	t.Helper()
	sig, err := signing.Sign(bytes.NewReader(data), k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// entry is one raw tar entry for handcrafted (possibly hostile) artifacts.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}

func manifestEntry(app, version string) entry {
	return file(ManifestName, `{"app":"`+app+`","version":"`+version+`","command":["bin/web"]}`)
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func special(flag byte, name, link string) entry {
	return entry{hdr: tar.Header{Typeflag: flag, Name: name, Linkname: link, Mode: 0o644}}
}

// artifact gzips a tar of entries.
func artifact(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeTestFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// assertNothingLeft checks that dest does not exist and that its parent
// holds nothing but the names in keep (no staging directory left behind).
func assertNothingLeft(t testing.TB, dest string, keep ...string) {
	t.Helper()
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed install (err %v)", dest, err)
	}
	ents, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, k := range keep {
		allowed[k] = true
	}
	for _, e := range ents {
		if !allowed[e.Name()] {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func joinNames(names []string) string { return strings.Join(names, " ") }
