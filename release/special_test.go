package release

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/internal/regfile"
)

// TestInstallRefusesSpecialFiles: an artifact or a signature that is a
// named pipe, a device or a directory, as a path or a file:// URL, is
// refused at once, naming what it is. A FIFO signature blocked Install
// forever before internal/regfile (the open waited for a writer).
func TestInstallRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	k := newTestKey(t, "k.pub")
	art := artifact(t, manifestEntry("web", "1.0.0"))
	good := writeTestFile(t, filepath.Join(dir, "web.tar.gz"), art)
	goodSig := writeTestFile(t, filepath.Join(dir, "web.tar.gz.sig"), k.sign(t, art))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := NewFetcher(Options{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]Source{
		"fifo signature":         {URL: good, SignatureURL: fifo},
		"fifo signature file://": {URL: good, SignatureURL: "file://" + fifo},
		"fifo artifact":          {URL: fifo, SignatureURL: goodSig},
		"fifo artifact file://":  {URL: "file://" + fifo, SignatureURL: goodSig},
		"device artifact":        {URL: "/dev/zero", SignatureURL: goodSig},
		"device signature":       {URL: good, SignatureURL: "file:///dev/zero"},
		"directory signature":    {URL: good, SignatureURL: dir},
		"directory artifact":     {URL: "file://" + dir, SignatureURL: goodSig},
		"null device signature":  {URL: good, SignatureURL: "/dev/null"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := f.Install(ctx, src, k.keys, Want{App: "web", Version: "1.0.0"}, filepath.Join(t.TempDir(), "dest"))
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("installed")
				}
				if !errors.Is(err, regfile.ErrNotRegular) && !strings.Contains(err.Error(), "not a regular file") {
					t.Fatalf("err = %v, want it to say it is not a regular file", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Install blocked on a special file")
			}
		})
	}
}

// TestManifestDirectoryIsNamed: an artifact whose release.json is a
// directory entry is refused saying so; it said "release.json: EOF".
func TestManifestDirectoryIsNamed(t *testing.T) {
	dir := t.TempDir()
	art := artifact(t, special('5', "release.json/", ""), file("release.json/x", "{}"))
	p := writeTestFile(t, filepath.Join(dir, "a.tar.gz"), art)
	_, err := Unpack(context.Background(), p, filepath.Join(dir, "dest"), Want{App: "web", Version: "1.0.0"}, Limits{})
	if err == nil || !strings.Contains(err.Error(), "the manifest must be a regular file, not a directory") || strings.Contains(err.Error(), "EOF") {
		t.Fatalf("err = %v", err)
	}
}
