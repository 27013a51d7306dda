package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/fleetops/reconciler/internal/regfile"
)

// Want is the release an artifact must hold. Empty fields are not checked.
type Want struct{ App, Version string }

// ErrWrongRelease means the artifact's manifest names another app or version
// than the one asked for.
var ErrWrongRelease = errors.New("artifact holds another release")

func (w Want) check(m *Manifest) error {
	if (w.App != "" && w.App != m.App) || (w.Version != "" && w.Version != m.Version) {
		return fmt.Errorf("%w: %s says %s, want %s %s", ErrWrongRelease, ManifestName, m, w.App, w.Version)
	}
	return nil
}

// Unpack checks and unpacks the artifact at artifactPath into dest, which must
// not exist (its parent must). Entries go into a staging directory beside dest
// that is renamed to dest only once every entry, every symlink, the manifest
// and want are checked; on any failure the staging directory is removed and
// dest is left untouched.
//
// Unpack does not check signatures: call it on a verified artifact, or use
// Fetcher.Install, which verifies first.
func Unpack(ctx context.Context, artifactPath, dest string, want Want, limits Limits) (*Manifest, error) {
	f, err := regfile.Open(artifactPath)
	if err != nil {
		return nil, fmt.Errorf("unpack: %w", err)
	}
	defer f.Close()
	m, err := unpack(ctx, f, dest, want, limits, nil)
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", artifactPath, err)
	}
	return m, nil
}

// unpack reads r once. When wantSHA256 is set, the bytes read must hash to it
// (the artifact did not change between verification and unpacking).
func unpack(ctx context.Context, r io.Reader, dest string, want Want, limits Limits, wantSHA256 []byte) (*Manifest, error) {
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("destination %s already exists or cannot be checked (%v)", dest, err)
	}
	staging, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".staging-")
	if err != nil {
		return nil, fmt.Errorf("make staging directory: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(staging)
		}
	}()
	m, err := extract(ctx, r, staging, want, limits, wantSHA256)
	if err != nil {
		return nil, err
	}
	if err := commit(staging, dest); err != nil {
		return nil, err
	}
	done = true
	return m, nil
}

// extract unpacks r into the empty directory staging and checks the result.
func extract(ctx context.Context, r io.Reader, staging string, want Want, limits Limits, wantSHA256 []byte) (*Manifest, error) {
	root, err := os.OpenRoot(staging)
	if err != nil {
		return nil, fmt.Errorf("open staging directory: %w", err)
	}
	defer root.Close()
	h := sha256.New()
	in := &ctxReader{ctx: ctx, r: io.TeeReader(r, h)}
	data, err := scan(in, limits, extractTo(root))
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return nil, fmt.Errorf("read artifact: %w", err)
	}
	if sum := h.Sum(nil); wantSHA256 != nil && !bytes.Equal(sum, wantSHA256) {
		return nil, fmt.Errorf("%w: artifact changed after verification: sha256 %s, verified %s",
			ErrDigestMismatch, hex.EncodeToString(sum), hex.EncodeToString(wantSHA256))
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, err
	}
	return m, want.check(m)
}

// extractTo writes each checked entry under root. os.Root refuses any path
// that would leave it, a second line of defence behind scan's checks.
func extractTo(root *os.Root) visitFunc {
	return func(e Entry, body io.Reader) error {
		var err error
		if dir := path.Dir(e.Name); dir != "." {
			err = root.MkdirAll(dir, 0o755)
		}
		switch {
		case err != nil:
		case e.Mode.IsDir():
			err = root.MkdirAll(e.Name, e.Mode.Perm())
		case e.Mode&fs.ModeSymlink != 0:
			err = root.Symlink(e.Link, e.Name)
		case e.Link != "":
			err = root.Link(e.Link, e.Name)
		default:
			err = writeFile(root, e, body)
		}
		if err != nil {
			return fmt.Errorf("unpack entry %q: %w", e.Name, err)
		}
		return nil
	}
}

func writeFile(root *os.Root, e Entry, body io.Reader) error {
	f, err := root.OpenFile(e.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.Mode.Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(f, body)
	if err == nil {
		err = f.Chmod(e.Mode.Perm()) // whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// commit makes staging durable and renames it to dest, refusing to replace
// anything that appeared at dest meanwhile.
func commit(staging, dest string) error {
	if err := syncFS(staging); err != nil {
		return err
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return fmt.Errorf("commit release: %w", err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("commit release: rename %s to %s: %w", staging, dest, err)
	}
	return syncFS(filepath.Dir(dest))
}

// syncFS flushes the filesystem holding dir (one syncfs instead of an fsync
// per file) so a crash after the rename cannot leave a half-written release.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
