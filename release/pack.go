package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetops/reconciler/internal/regfile"
)

// Pack writes dir as a release artifact (a gzip'd tar) to w. The output is
// reproducible: the same tree gives the same bytes (with the same Go
// version's compress/gzip) whoever packs it, whenever. release.json comes
// first, then every other entry in lexical walk order; mtimes are the Unix
// epoch, owners 0:0 without names, modes 0755 for directories and files
// anyone may execute, 0644 for other files.
//
// release.json in dir, if any, is kept with app and version set (it may leave
// them out; it may not contradict them) and must pass Validate.
// Directories, regular files and symlinks that stay inside dir are packed;
// anything else is an error.
func Pack(dir string, app, version string, w io.Writer) error {
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pack %s: no such directory: name the directory holding the release's files", dir)
	case err != nil:
		return fmt.Errorf("pack %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("pack %s: not a directory: name the directory holding the release's files", dir)
	}
	m, err := packManifest(dir, app, version)
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	err = writeEntry(tw, &tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Mode: 0o644, Size: int64(len(m))}, bytes.NewReader(m))
	if err == nil {
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			return packEntry(tw, dir, p, d, err)
		})
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	return nil
}

// packManifest reads dir/release.json (optional), merges app and version and
// returns the manifest to pack.
func packManifest(dir, app, version string) ([]byte, error) {
	var m Manifest
	data, err := regfile.ReadFile(filepath.Join(dir, ManifestName), MaxManifestSize)
	absent := errors.Is(err, fs.ErrNotExist)
	switch {
	case absent:
	case err != nil:
		return nil, err
	case len(bytes.TrimSpace(data)) == 0:
		return nil, fmt.Errorf("%s is empty: want a JSON object with at least \"command\" (docs/release-manifest.md)", ManifestName)
	default:
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%s: %w", ManifestName, err)
		}
	}
	if (m.App != "" && m.App != app) || (m.Version != "" && m.Version != version) {
		return nil, fmt.Errorf("%s says %s %s, but packing %s %s", ManifestName, m.App, m.Version, app, version)
	}
	m.App, m.Version = app, version
	if m.Driver == "" {
		m.Driver = DefaultDriver
	}
	if err := m.Validate(); err != nil {
		if absent {
			return nil, fmt.Errorf("no %s in %s, and a release needs one: write it with at least \"command\" (docs/release-manifest.md): %w", ManifestName, dir, err)
		}
		return nil, err
	}
	out, err := json.MarshalIndent(&m, "", "  ")
	return append(out, '\n'), err
}

// packEntry adds one walked path to the archive.
func packEntry(tw *tar.Writer, dir, p string, d fs.DirEntry, walkErr error) error {
	if walkErr != nil {
		return walkErr
	}
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == "." || rel == ManifestName {
		return err
	}
	name := filepath.ToSlash(rel)
	fi, err := d.Info()
	if err != nil {
		return err
	}
	h := &tar.Header{Name: name, Mode: 0o644}
	switch {
	case fi.IsDir():
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, name+"/", 0o755
	case fi.Mode().IsRegular():
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		if fi.Mode()&0o111 != 0 {
			h.Mode = 0o755
		}
		return packFile(tw, h, p)
	case fi.Mode()&fs.ModeSymlink != 0:
		h.Typeflag, h.Mode = tar.TypeSymlink, 0o777
		if h.Linkname, err = os.Readlink(p); err != nil {
			return err
		}
		if t := path.Join(path.Dir(name), h.Linkname); path.IsAbs(h.Linkname) || t == ".." || strings.HasPrefix(t, "../") {
			return fmt.Errorf("%s: symlink to %q points outside the release", name, h.Linkname)
		}
	default:
		return fmt.Errorf("%s: cannot pack a %v", name, fi.Mode().Type())
	}
	return writeEntry(tw, h, nil)
}

func packFile(tw *tar.Writer, h *tar.Header, p string) error {
	f, err := regfile.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeEntry(tw, h, f)
}

// writeEntry normalises what varies between machines and writes the entry.
func writeEntry(tw *tar.Writer, h *tar.Header, body io.Reader) error {
	h.ModTime = time.Unix(0, 0)
	h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if body == nil {
		return nil
	}
	if n, err := io.Copy(tw, body); err != nil || n != h.Size {
		return fmt.Errorf("%s: wrote %d of %d bytes (file changed while packing?): %v", h.Name, n, h.Size, err)
	}
	return nil
}

// Inspect checks the artifact at artifactPath as Unpack would, without
// writing anything, and returns its manifest and entries. It does not verify
// signatures: call Verify first.
func Inspect(ctx context.Context, artifactPath string, limits Limits) (*Manifest, []Entry, error) {
	f, err := openLocal(artifactPath)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	var entries []Entry
	data, err := scan(&ctxReader{ctx: ctx, r: f}, limits, func(e Entry, _ io.Reader) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("inspect %s: %w", artifactPath, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect %s: %w", artifactPath, err)
	}
	return m, entries, nil
}
