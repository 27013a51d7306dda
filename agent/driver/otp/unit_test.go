package otp

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

func TestParseVersions(t *testing.T) {
	out := "Installed versions:\n* 1.0.0\told\n* 1.1.0\tpermanent\n* 1.2.0\tcurrent\n"
	got, err := parseVersions(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []ReleaseState{{Version: "1.2.0", Status: "current"}, {Version: "1.1.0", Status: "permanent"}, {Version: "1.0.0", Status: "old"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseVersions = %v, want %v", got, want)
	}
	if v := running(got); v != "1.2.0" {
		t.Errorf("running = %s, want the current 1.2.0", v)
	}
	if v := running(got[1:]); v != "1.1.0" {
		t.Errorf("running without current = %s, want the permanent 1.1.0", v)
	}
	for _, bad := range []string{"", "Installed versions:\n", "* 1.0.0 old extra"} {
		if _, err := parseVersions(bad); err == nil {
			t.Errorf("parseVersions(%q): no error", bad)
		}
	}
}

func TestReleaseName(t *testing.T) {
	for _, tc := range []struct {
		command []string
		want    string
	}{
		{nil, "snake_game"},
		{[]string{"bin/snake"}, "snake"},
		{[]string{"bin/snake", "foreground"}, ""},
		{[]string{"snake"}, ""},
		{[]string{"bin/a/b"}, ""},
		{[]string{"bin/.."}, ""}, // the root itself: accepted before
		{[]string{"bin/."}, ""},
	} {
		got, err := releaseName(release.Manifest{App: "snake_game", Version: "1.0.0", Command: tc.command})
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("releaseName(command %q) = %q, %v; want %q", tc.command, got, err, tc.want)
		}
	}
}

func TestSwitchRefuses(t *testing.T) {
	drv, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context) error { return nil }
	dir := t.TempDir()
	for name, next := range map[string]driver.Release{
		"no tarball": {App: "web", Version: "1.0.0", Dir: dir, Manifest: release.Manifest{App: "web", Version: "1.0.0"}},
		"listen": {App: "web", Version: "1.0.0", Dir: dir, Manifest: release.Manifest{App: "web", Version: "1.0.0",
			Listen: []release.Listener{{Name: "http", Address: ":8080"}}}},
		"version": {App: "web", Version: `1"0`, Dir: dir, Manifest: release.Manifest{App: "web", Version: `1"0`}},
	} {
		if _, err := drv.Switch(context.Background(), nil, next, ok); err == nil {
			t.Errorf("%s: Switch succeeded", name)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without Dir succeeded")
	}
}

func TestUnpackTarball(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
	}
	build := func(entries ...entry) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, e := range entries {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o755}
			body := []byte("x")
			if e.typ == tar.TypeReg {
				h.Size = int64(len(body))
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if e.typ == tar.TypeReg {
				tw.Write(body)
			}
		}
		tw.Close()
		zw.Close()
		p := filepath.Join(t.TempDir(), "r.tar.gz")
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := build(entry{name: "bin/", typ: tar.TypeDir}, entry{name: "bin/web", typ: tar.TypeReg},
		entry{name: "lib/a/priv", typ: tar.TypeReg}, entry{name: "bin/link", link: "../lib/a/priv", typ: tar.TypeSymlink})
	dst := t.TempDir()
	if err := release.Extract(context.Background(), good, dst, release.Limits{MaxBytes: 1 << 20}); err != nil {
		t.Fatalf("good tarball: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "bin", "link")); err != nil || string(b) != "x" {
		t.Errorf("bin/link: %q, %v", b, err)
	}
	for name, tgz := range map[string]string{
		"dotdot":        build(entry{name: "../evil", typ: tar.TypeReg}),
		"absolute":      build(entry{name: "/etc/evil", typ: tar.TypeReg}),
		"link out":      build(entry{name: "bin/l", link: "../../etc", typ: tar.TypeSymlink}),
		"absolute link": build(entry{name: "bin/l", link: "/etc", typ: tar.TypeSymlink}),
		"hard link out": build(entry{name: "bin/h", link: "../etc/passwd", typ: tar.TypeLink}),
	} {
		err := release.Extract(context.Background(), tgz, t.TempDir(), release.Limits{MaxBytes: 1 << 20})
		if !errors.Is(err, release.ErrUnsafe) {
			t.Errorf("%s: err = %v, want %v", name, err, release.ErrUnsafe)
		}
	}
	if err := release.Extract(context.Background(), good, t.TempDir(), release.Limits{MaxBytes: 1}); err == nil {
		t.Error("size limit not enforced")
	}
}

// TestScriptIsAProgramOfTheRoot: bin/<rel> runs only when it is a file of
// the release root; a symlink leaving it is refused without running.
func TestScriptIsAProgramOfTheRoot(t *testing.T) {
	root := t.TempDir()
	victim := filepath.Join(t.TempDir(), "ran")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(root, "bin", "web")); err != nil {
		t.Fatal(err)
	}
	s := script{root: root, rel: "web", timeout: 5 * time.Second, log: slog.New(slog.DiscardHandler)}
	_, err := s.run(context.Background(), "-c", "touch "+victim)
	if !errors.Is(err, release.ErrOutsideRelease) {
		t.Errorf("run: %v, want refused", err)
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("a program outside the release root ran")
	}
}
