package release

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// maxLinkDepth bounds symlink chains, as the kernel's ELOOP does.
const maxLinkDepth = 40

var errEscapes = errors.New("escapes the release directory")

// finish runs once the whole archive is read: every symlink must resolve
// inside the release (following the archive's other symlinks, since a link
// that is inside on paper can escape through another: "y" → "." and
// "x" → "y/.."), and the manifest must be there.
func (s *scanner) finish() ([]byte, error) {
	for name, target := range s.links {
		base := strings.Split(path.Dir(name), "/")
		if base[0] == "." {
			base = nil
		}
		if _, err := s.resolve(base, target, 0); err != nil {
			return nil, unsafeEntry(name, "symlink to %q %v", target, err)
		}
	}
	if s.manifest == nil && !s.noManifest {
		return nil, fmt.Errorf("no %s at the root of the artifact", ManifestName)
	}
	return s.manifest, nil
}

// resolve walks rel from the directory base (components of a real directory),
// following the archive's symlinks, and fails if the walk leaves the root.
func (s *scanner) resolve(base []string, rel string, depth int) ([]string, error) {
	out := append([]string(nil), base...)
	for _, c := range strings.Split(rel, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			if len(out) == 0 {
				return nil, errEscapes
			}
			out = out[:len(out)-1]
			continue
		}
		out = append(out, c)
		t, ok := s.links[strings.Join(out, "/")]
		if !ok {
			continue
		}
		if depth >= maxLinkDepth {
			return nil, errors.New("has too many levels of symlinks")
		}
		if path.IsAbs(t) {
			return nil, errEscapes
		}
		var err error
		if out, err = s.resolve(out[:len(out)-1], t, depth+1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// boundedReader fails once more than left bytes are read: a gzip bomb stops
// at the bound instead of filling memory or disk.
type boundedReader struct {
	r     io.Reader
	limit int64
	read  int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if b.read > b.limit {
		return n, fmt.Errorf("%w: decompresses to more than %d bytes (gzip bomb?)", ErrUnsafe, b.limit)
	}
	return n, err
}
