package release

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/signing"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// BenchmarkFetchVerifyUnpack200MB installs (fetch from a local file, sha256
// and ECDSA signature in one streaming read, safe unpack, atomic rename) a
// 200 MB artifact, beside sha256sum of the same file. Each sub-benchmark
// reports MB/s and the peak RSS while it ran. Run with `make bench`, or:
//
//	go test -run '^$' -bench FetchVerifyUnpack -benchtime 3x ./release/
func BenchmarkFetchVerifyUnpack200MB(b *testing.B) {
	dir := b.TempDir()
	art := filepath.Join(dir, "web.tar.gz")
	size := makeBigArtifact(b, dir, art, 200<<20)
	key := newTestKey(b, "cosign.pub")
	f, err := os.Open(art)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := signing.Sign(f, key.priv)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	writeTestFile(b, art+".sig", sig)
	fetcher, err := NewFetcher(Options{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		b.Fatal(err)
	}
	src := Source{URL: art, SignatureURL: art + ".sig"}

	b.Run("install", func(b *testing.B) {
		b.SetBytes(size)
		resetPeakRSS(b)
		i := 0
		for b.Loop() {
			i++
			dest := filepath.Join(dir, fmt.Sprintf("web-%d", i))
			if _, err := fetcher.Install(context.Background(), src, key.keys, Want{App: "web", Version: "1.0.0"}, dest); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dest)
			b.StartTimer()
		}
		b.ReportMetric(peakRSS(b), "peak-RSS-MB")
	})
	// An ed25519 key in the set makes the digester also compute SHA-512 and
	// hold the first MaxPlainEd25519Size bytes for plain ed25519.
	withEd := &signing.KeySet{}
	for _, id := range []string{"cosign.pub", "ed.pub"} {
		pub := key.pub
		if id == "ed.pub" {
			pub = ed25519PubPEM(b)
		}
		if err := withEd.Add(id, pub); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("install-keyset-with-ed25519", func(b *testing.B) {
		b.SetBytes(size)
		resetPeakRSS(b)
		i := 0
		for b.Loop() {
			i++
			dest := filepath.Join(dir, fmt.Sprintf("web-ed-%d", i))
			if _, err := fetcher.Install(context.Background(), src, withEd, Want{App: "web", Version: "1.0.0"}, dest); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dest)
			b.StartTimer()
		}
		b.ReportMetric(peakRSS(b), "peak-RSS-MB")
	})
	b.Run("verify-only", func(b *testing.B) {
		b.SetBytes(size)
		resetPeakRSS(b)
		for b.Loop() {
			if _, err := Verify(context.Background(), art, key.keys, sig, "", 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(peakRSS(b), "peak-RSS-MB")
	})
	b.Run("sha256sum", func(b *testing.B) {
		if _, err := exec.LookPath("sha256sum"); err != nil {
			b.Skip("no sha256sum")
		}
		b.SetBytes(size)
		var maxKB float64
		for b.Loop() {
			maxKB = max(maxKB, runSha256sum(b, art))
		}
		if maxKB > 0 {
			b.ReportMetric(maxKB/1024, "peak-RSS-MB")
		}
	})
}

// runSha256sum runs sha256sum on path, under /usr/bin/time when there is one
// to measure its own peak RSS (rusage of a child forked from this large
// process would count this process's pages). It returns the peak in KB or 0.
func runSha256sum(b *testing.B, path string) float64 {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		if err := exec.Command("sha256sum", path).Run(); err != nil {
			b.Fatal(err)
		}
		return 0
	}
	var stderr strings.Builder
	cmd := exec.Command("/usr/bin/time", "-f", "%M", "sha256sum", path)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatal(err, stderr.String())
	}
	kb, _ := strconv.ParseFloat(strings.TrimSpace(stderr.String()), 64)
	return kb
}

func ed25519PubPEM(b *testing.B) []byte {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		b.Fatal(err)
	}
	return pemBytes
}

// makeBigArtifact packs a release of incompressible files totalling n bytes
// (the worst case for gzip) and returns the artifact's size.
func makeBigArtifact(b *testing.B, dir, art string, n int64) int64 {
	src := filepath.Join(dir, "src")
	writeTestFile(b, filepath.Join(src, ManifestName), []byte(`{"command": ["bin/web"]}`))
	rng := rand.NewChaCha8([32]byte{1}) // an io.Reader of incompressible bytes
	const chunk = 10 << 20
	for i := int64(0); i*chunk < n; i++ {
		p := filepath.Join(src, "data", fmt.Sprintf("blob-%02d", i))
		writeTestFile(b, p, nil)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(f, rng, min(chunk, n-i*chunk)); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	out, err := os.Create(art)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	w := bufio.NewWriterSize(out, 1<<20)
	if err := Pack(src, "web", "1.0.0", w); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(src)
	fi, err := out.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// resetPeakRSS clears the kernel's high-water mark of this process's RSS.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS: %v", err)
	}
}

// peakRSS reads VmHWM, the peak RSS since the last reset, in MB.
func peakRSS(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
