package otp

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// errUnsafeEntry means a tarball entry would land outside its directory.
var errUnsafeEntry = errors.New("entry escapes the release root")

// unpackTarball extracts the relx tarball at src into the existing, empty
// directory dst. Entries are written through an os.Root, so none can leave
// dst; links that point out of dst, hard links and devices are refused, and
// the total size is bounded by max bytes.
func unpackTarball(ctx context.Context, src, dst string, max int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()

	tr := tar.NewReader(zr)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		total += h.Size
		if total > max {
			return fmt.Errorf("%s: more than %d bytes unpacked", src, max)
		}
		if err := extract(root, tr, h); err != nil {
			return fmt.Errorf("%s: %s: %w", src, h.Name, err)
		}
	}
}

// extract writes one entry under root.
func extract(root *os.Root, r io.Reader, h *tar.Header) error {
	name := path.Clean(h.Name)
	if !fs.ValidPath(name) {
		return errUnsafeEntry
	}
	if name == "." {
		return nil
	}
	mode := fs.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		return root.MkdirAll(name, 0o755)
	case tar.TypeReg:
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o200)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, r); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	case tar.TypeSymlink:
		target := path.Join(path.Dir(name), h.Linkname)
		if path.IsAbs(h.Linkname) || !fs.ValidPath(target) {
			return errUnsafeEntry
		}
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		return root.Symlink(h.Linkname, filepath.FromSlash(name))
	default:
		return fmt.Errorf("entry type %q not allowed in a release", h.Typeflag)
	}
}
