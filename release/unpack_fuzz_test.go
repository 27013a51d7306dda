package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The unpack targets check the one promise that matters for an artifact from
// anywhere: nothing is written outside the destination. Each run extracts
// into the staging directory <tmp>/rel beside <tmp>/outside, which holds one
// file; afterwards <tmp> holds only outside and rel, outside is untouched,
// and on success every symlink under rel, followed through the others,
// stays under rel, nothing but files, dirs and symlinks were made, and the
// manifest returned is the one unpacked. (TestInstall* check that unpack
// removes the staging directory on failure.)

// FuzzUnpack builds the tar from a script, one entry a line:
// "<kind>|<name>|<link or content>", kind f (file), x (executable), d, l
// (symlink), h (hardlink), c (char device), p (fifo); a release.json is
// added at the end when the script has none, so most runs get past the
// manifest check and exercise the links.
func FuzzUnpack(f *testing.F) {
	for _, s := range []string{
		"x|bin/web|#!/bin/sh\nd|etc\nf|etc/web.conf|port=1\nl|current|bin",
		"l|y|.\nl|x|y/..",                // escapes only through another link
		"l|a|b\nl|b|a",                   // a loop
		"l|lib|../outside\nf|lib/evil|x", // a file through a link out
		"d|a\nl|a/b|../../outside/secret",
		"f|data|x\nh|copy|data\nh|abs|/etc/passwd",
		"l|d|.\nf|d/d/d/release.json|{}",
		"f|./a/./b|x\nf|a/b|y",
		"d|a\nd|a\nf|a|x",
		"c|dev/null|\np|fifo|",
		"l|release.json|bin/web",
		"l|up|sub/../..\nd|sub",
		"f|" + strings.Repeat("long/", 40) + "name|x\nl|" + strings.Repeat("l", 120) + "|" + strings.Repeat("../", 30),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		var entries []tar.Header
		var bodies []string
		manifest := false
		for line := range strings.Lines(script) {
			kind, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "|")
			name, arg, _ := strings.Cut(rest, "|")
			h := tar.Header{Name: name, Mode: 0o644, Format: tar.FormatPAX}
			body := ""
			switch kind {
			case "f", "x":
				h.Typeflag, body = tar.TypeReg, strings.ReplaceAll(arg, `\n`, "\n")
				if kind == "x" {
					h.Mode = 0o755
				}
			case "d":
				h.Typeflag, h.Mode = tar.TypeDir, 0o755
			case "l":
				h.Typeflag, h.Linkname = tar.TypeSymlink, arg
			case "h":
				h.Typeflag, h.Linkname = tar.TypeLink, arg
			case "c":
				h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
			case "p":
				h.Typeflag = tar.TypeFifo
			default:
				continue
			}
			h.Size = int64(len(body))
			manifest = manifest || strings.Contains(name, ManifestName)
			entries, bodies = append(entries, h), append(bodies, body)
		}
		if !manifest {
			m := `{"app":"web","version":"1.0.0","command":["bin/web"]}`
			entries = append(entries, tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Mode: 0o644, Size: int64(len(m))})
			bodies = append(bodies, m)
		}
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		for i := range entries {
			if err := tw.WriteHeader(&entries[i]); err != nil {
				return // archive/tar cannot write it, so no artifact can hold it
			}
			if _, err := tw.Write([]byte(bodies[i])); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		checkUnpack(t, raw.Bytes())
	})
}

// FuzzUnpackRaw unpacks any bytes as the tar (gzip'd here), for what
// archive/tar itself reads: old formats, PAX and GNU long names, sparse
// files, truncation.
func FuzzUnpackRaw(f *testing.F) {
	for _, s := range []string{"l|y|.\nl|x|y/..", "f|a|x\nh|b|a", "x|bin/web|x\nl|cur|bin"} {
		for _, format := range []tar.Format{tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU} {
			f.Add(scriptTar(s, format))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkUnpack(t, raw)
	})
}

// scriptTar is FuzzUnpack's script format for the raw target's seeds.
func scriptTar(script string, format tar.Format) []byte {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for line := range strings.Lines(script + "\nf|" + ManifestName + `|{"app":"web","version":"1.0.0","command":["bin/web"]}`) {
		kind, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "|")
		name, arg, _ := strings.Cut(rest, "|")
		h := tar.Header{Name: name, Mode: 0o644, Format: format}
		switch kind {
		case "f", "x":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(arg))
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, arg
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, arg
		}
		tw.WriteHeader(&h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(arg))
		}
	}
	tw.Close()
	return raw.Bytes()
}

// checkUnpack gzips raw, unpacks it and checks that nothing escaped.
func checkUnpack(t *testing.T, raw []byte) {
	t.Helper()
	var art bytes.Buffer
	zw := gzip.NewWriter(&art)
	zw.Write(raw)
	zw.Close()

	tmp := t.TempDir()
	outside := filepath.Join(tmp, "outside")
	secret := filepath.Join(outside, "secret")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	// extract is unpack but for the staging directory around it (made here)
	// and the final rename and syncfs, which cost a flush of the whole
	// filesystem per run.
	dest := filepath.Join(tmp, "rel")
	if err := os.Mkdir(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	limits := Limits{MaxBytes: 1 << 20, MaxEntries: 1000}
	m, err := extract(context.Background(), bytes.NewReader(art.Bytes()), dest, Want{}, limits, nil)

	ents, rerr := os.ReadDir(tmp)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, e := range ents {
		if e.Name() != "outside" && e.Name() != "rel" {
			t.Fatalf("unpack (err %v) wrote %s beside the destination", err, e.Name())
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("unpack (err %v) wrote into a sibling directory: %v", err, ents)
	}
	if fi, err := os.Lstat(secret); err != nil || !fi.Mode().IsRegular() || fi.Size() != 6 {
		t.Fatalf("unpack changed a file outside the destination: %v %v", fi, err)
	} else if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink != 1 {
		t.Fatalf("unpack hardlinked a file outside the destination (%d links)", st.Nlink)
	} else if b, _ := os.ReadFile(secret); string(b) != "secret" {
		t.Fatalf("unpack overwrote a file outside the destination: %q", b)
	}
	if err != nil {
		return // unpack removes the staging directory
	}
	werr := filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
		switch mode := d.Type(); {
		case mode&fs.ModeSymlink != 0:
			if !staysInside(dest, filepath.Dir(rel), rel) {
				t.Errorf("symlink %s → %s leaves the release", rel, mustReadlink(p))
			}
		case mode.IsDir() || mode.IsRegular():
		default:
			t.Errorf("%s is a %v", rel, mode)
		}
		return nil
	})
	if werr != nil {
		t.Fatal(werr)
	}
	data, rerr := os.ReadFile(filepath.Join(dest, ManifestName))
	if rerr != nil {
		t.Fatalf("unpack succeeded without a readable %s: %v", ManifestName, rerr)
	}
	if m2, perr := ParseManifest(data); perr != nil || m2.String() != m.String() {
		t.Fatalf("unpack returned manifest %v, the release holds %v (%v)", m, m2, perr)
	}
}

func mustReadlink(p string) string {
	s, _ := os.Readlink(p)
	return s
}

// staysInside resolves the symlink at rel (relative to root) the way the
// kernel would, following every symlink on the real filesystem, and reports
// whether the walk stays inside root (a missing component ends it, as the
// rest is then created inside whatever directory the walk reached).
func staysInside(root, dir, rel string) bool {
	var stack []string // components from root
	if dir != "." {
		stack = strings.Split(dir, "/")
	}
	target := mustReadlink(filepath.Join(root, rel))
	pending := strings.Split(target, "/")
	if strings.HasPrefix(target, "/") {
		return false
	}
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		next := filepath.Join(append([]string{root}, append(stack, c)...)...)
		fi, err := os.Lstat(next)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			stack = append(stack, c)
			if err != nil {
				// Missing: the kernel resolves the rest lexically from here on
				// for a create, and fails for a read; stay lexical.
				continue
			}
			continue
		}
		if hops++; hops > maxLinkDepth {
			return true // ELOOP: the kernel follows no further
		}
		t := mustReadlink(next)
		if strings.HasPrefix(t, "/") {
			return false
		}
		pending = append(strings.Split(t, "/"), pending...)
	}
	return true
}
