package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Limits bound what an artifact may unpack to, against tar and gzip bombs.
// Zero fields take the defaults.
type Limits struct {
	// MaxBytes is the total size of the regular files. Default 4 GiB.
	MaxBytes int64
	// MaxEntries is the number of entries of any kind. Default 100,000.
	MaxEntries int
}

// Default limits.
const (
	DefaultMaxBytes   = 4 << 30
	DefaultMaxEntries = 100_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// inflateBound is the most decompressed bytes an artifact within l may hold:
// file contents plus a header and padding per entry, plus the end blocks.
func (l Limits) inflateBound() int64 {
	return l.MaxBytes + int64(l.MaxEntries)*3*512 + 1<<20
}

// ErrUnsafe is wrapped by every refusal of an artifact's content: an entry
// that could escape the release directory, or a size or count limit.
var ErrUnsafe = errors.New("unsafe artifact")

// UnsafeEntryError names the entry an artifact was refused for.
type UnsafeEntryError struct {
	Entry  string
	Reason string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("unsafe entry %q: %s", e.Entry, e.Reason)
}

// Is makes errors.Is(err, ErrUnsafe) true.
func (e *UnsafeEntryError) Is(target error) bool { return target == ErrUnsafe }

func unsafeEntry(name, format string, args ...any) error {
	return &UnsafeEntryError{Entry: name, Reason: fmt.Sprintf(format, args...)}
}

// Entry is one checked entry of an artifact, as Inspect lists it.
type Entry struct {
	Name string      // clean slash path relative to the release root
	Mode fs.FileMode // type bits and the normalised permission
	Size int64       // regular files only
	// Link is a symlink's target (relative to its directory) or a
	// hardlink's target (relative to the release root).
	Link string
}

// visitFunc receives each checked entry; body reads a regular file's content.
type visitFunc func(e Entry, body io.Reader) error

// scanner walks a gzip'd tar once, checking every entry before visit sees it.
type scanner struct {
	limits   Limits
	entries  int
	total    int64
	kinds    map[string]fs.FileMode // entry name → type bits
	links    map[string]string      // symlink name → target
	manifest []byte
	// noManifest: an archive inside a release (Extract), which has none.
	noManifest bool
}

// scan reads the whole artifact from r (to the end of the gzip stream, so a
// hashing reader underneath sees every byte), calls visit for each entry and
// returns the manifest's bytes once every symlink is known to stay inside.
func scan(r io.Reader, limits Limits, visit visitFunc) ([]byte, error) {
	return newScanner(limits).run(r, visit)
}

func newScanner(limits Limits) *scanner {
	return &scanner{limits: limits.withDefaults(), kinds: map[string]fs.FileMode{}, links: map[string]string{}}
}

func (s *scanner) run(r io.Reader, visit visitFunc) ([]byte, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a gzip stream: %w", err)
	}
	inflated := &boundedReader{r: gz, limit: s.limits.inflateBound()}
	tr := tar.NewReader(inflated)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if err := s.entry(h, tr, visit); err != nil {
			return nil, err
		}
	}
	if _, err := io.Copy(io.Discard, inflated); err != nil {
		return nil, fmt.Errorf("read gzip stream after the tar: %w", err)
	}
	return s.finish()
}

// entry checks one header and hands it to visit.
func (s *scanner) entry(h *tar.Header, body io.Reader, visit visitFunc) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	s.entries++
	if s.entries > s.limits.MaxEntries {
		return unsafeEntry(h.Name, "more than %d entries", s.limits.MaxEntries)
	}
	e, err := s.check(h)
	if err != nil || e.Name == "." {
		return err
	}
	s.kinds[e.Name] = e.Mode.Type()
	for dir := path.Dir(e.Name); dir != "."; dir = path.Dir(dir) {
		if _, ok := s.kinds[dir]; !ok {
			s.kinds[dir] = fs.ModeDir // implied by the entry
		}
	}
	if e.Name == ManifestName {
		if s.manifest, err = io.ReadAll(io.LimitReader(body, MaxManifestSize+1)); err != nil {
			return fmt.Errorf("read %s: %w", ManifestName, err)
		}
		if len(s.manifest) > MaxManifestSize {
			return unsafeEntry(e.Name, "more than %d bytes", MaxManifestSize)
		}
		body = bytes.NewReader(s.manifest)
	}
	return visit(e, body)
}

// check validates a header's name, kind and size and returns the entry.
func (s *scanner) check(h *tar.Header) (Entry, error) {
	name, err := entryName(h.Name)
	if err != nil || name == "." {
		return Entry{Name: name}, err
	}
	if err := s.checkParents(name); err != nil {
		return Entry{}, err
	}
	if k, dup := s.kinds[name]; dup && !(k.IsDir() && h.Typeflag == tar.TypeDir) {
		return Entry{}, unsafeEntry(name, "duplicate entry")
	}
	e := Entry{Name: name, Mode: normalMode(h)}
	switch h.Typeflag {
	case tar.TypeReg: // archive/tar reports the old TypeRegA as TypeReg
		return e, s.checkFile(h, &e)
	case tar.TypeDir:
		if name == ManifestName || strings.HasPrefix(name, ManifestName+"/") {
			return e, unsafeEntry(name, "the manifest must be a regular file, not a directory")
		}
		return e, nil
	case tar.TypeSymlink:
		return e, s.checkSymlink(h, &e)
	case tar.TypeLink:
		return e, s.checkHardlink(h, &e)
	case tar.TypeChar, tar.TypeBlock:
		return e, unsafeEntry(name, "device entry")
	case tar.TypeFifo:
		return e, unsafeEntry(name, "fifo entry")
	default:
		return e, unsafeEntry(name, "unsupported entry type %q", h.Typeflag)
	}
}

// entryName cleans an entry name ("./bin/web" → "bin/web"), refusing
// absolute paths and '..' components. The root itself is ".".
func entryName(raw string) (string, error) {
	if raw == "" {
		return "", unsafeEntry(raw, "empty name")
	}
	if strings.HasPrefix(raw, "/") {
		return "", unsafeEntry(raw, "absolute path")
	}
	if strings.ContainsRune(raw, '\\') || strings.ContainsRune(raw, 0) {
		return "", unsafeEntry(raw, "backslash or NUL in name")
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", unsafeEntry(raw, "path has a '..' component")
		}
	}
	return path.Clean(raw), nil
}

// checkParents refuses an entry below a symlink or a non-directory: writing
// it would follow the link.
func (s *scanner) checkParents(name string) error {
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if k, ok := s.kinds[dir]; ok && !k.IsDir() {
			return unsafeEntry(name, "parent %q is not a directory", dir)
		}
	}
	return nil
}

func (s *scanner) checkFile(h *tar.Header, e *Entry) error {
	if h.Size < 0 {
		return unsafeEntry(e.Name, "negative size")
	}
	s.total += h.Size
	if s.total > s.limits.MaxBytes {
		return unsafeEntry(e.Name, "files total more than %d bytes", s.limits.MaxBytes)
	}
	e.Size = h.Size
	return nil
}

func (s *scanner) checkSymlink(h *tar.Header, e *Entry) error {
	t := h.Linkname
	switch {
	case e.Name == ManifestName:
		return unsafeEntry(e.Name, "the manifest must be a regular file")
	case t == "":
		return unsafeEntry(e.Name, "symlink with an empty target")
	case path.IsAbs(t):
		return unsafeEntry(e.Name, "symlink to absolute path %q", t)
	case strings.ContainsRune(t, 0):
		return unsafeEntry(e.Name, "NUL in symlink target")
	}
	s.links[e.Name] = t
	e.Link = t
	return nil
}

func (s *scanner) checkHardlink(h *tar.Header, e *Entry) error {
	t, err := entryName(h.Linkname)
	if err != nil {
		return unsafeEntry(e.Name, "hardlink to %q, outside the release", h.Linkname)
	}
	if k, ok := s.kinds[t]; !ok || !k.IsRegular() {
		return unsafeEntry(e.Name, "hardlink to %q, not a regular file earlier in the archive", h.Linkname)
	}
	if e.Name == ManifestName {
		return unsafeEntry(e.Name, "the manifest must be a regular file")
	}
	e.Link = t
	return nil
}

// normalMode keeps only the type and whether anyone may execute: 0755 or 0644.
func normalMode(h *tar.Header) fs.FileMode {
	switch h.Typeflag {
	case tar.TypeDir:
		return fs.ModeDir | 0o755
	case tar.TypeSymlink:
		return fs.ModeSymlink | 0o777
	}
	if h.Mode&0o111 != 0 {
		return 0o755
	}
	return 0o644
}
