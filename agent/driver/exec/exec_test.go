package exec

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// hello returns version v of examples/releases/hello-exec, copied into a
// temporary directory, with HELLO_STATE set to state.
func hello(t *testing.T, v, state string, broken bool) driver.Release {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../../examples/releases/hello-exec")); err != nil {
		t.Fatal(err)
	}
	if broken {
		if err := os.WriteFile(filepath.Join(dir, "broken"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, release.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m release.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m.Version, m.Env = v, map[string]string{"HELLO_STATE": state}
	return driver.Release{App: "hello", Version: v, Dir: dir, Manifest: m}
}

func active(t *testing.T, state string) string {
	b, err := os.ReadFile(filepath.Join(state, "active"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestSwitchAndRollback(t *testing.T) {
	state := filepath.Join(t.TempDir(), "hello")
	d := New(Options{HookTimeout: 10 * time.Second})
	ctx := context.Background()
	r1, err := d.Switch(ctx, nil, hello(t, "1.0.0", state, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := active(t, state); got != "1.0.0" || r1.Version != "1.0.0" {
		t.Fatalf("active %q, running %+v", got, r1)
	}
	r2, err := d.Switch(ctx, &r1, hello(t, "2.0.0", state, false), func(context.Context) error { return nil })
	if err != nil || active(t, state) != "2.0.0" {
		t.Fatalf("switch to 2.0.0: %v, active %q", err, active(t, state))
	}
	r3, err := d.Switch(ctx, &r2, hello(t, "3.0.0", state, true), nil)
	if err == nil || !strings.Contains(err.Error(), "health hook") || !strings.Contains(err.Error(), "is broken") {
		t.Fatalf("switch to a broken version: %v", err)
	}
	if got := active(t, state); got != "2.0.0" || r3.Version != "2.0.0" {
		t.Fatalf("after the failed switch: active %q, running %s", got, r3.Version)
	}
	if err := d.Stop(ctx, r3); err != nil {
		t.Fatal(err)
	}
	if got := active(t, state); got != "" {
		t.Fatalf("after Stop: active %q", got)
	}
}

func TestFailedHealthFuncRollsBack(t *testing.T) {
	state := filepath.Join(t.TempDir(), "hello")
	d := New(Options{})
	ctx := context.Background()
	r1, err := d.Switch(ctx, nil, hello(t, "1.0.0", state, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	sick := func(context.Context) error { return context.DeadlineExceeded }
	if _, err := d.Switch(ctx, &r1, hello(t, "2.0.0", state, false), sick); err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Fatalf("switch with a failing health check: %v", err)
	}
	if got := active(t, state); got != "1.0.0" {
		t.Fatalf("active %q, want 1.0.0 back", got)
	}
}

func TestHookTimeout(t *testing.T) {
	state := filepath.Join(t.TempDir(), "hello")
	rel := hello(t, "1.0.0", state, false)
	rel.Manifest.Hooks.Install = []string{"hooks/slow.sh"}
	if err := os.WriteFile(filepath.Join(rel.Dir, "hooks/slow.sh"), []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := New(Options{HookTimeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := d.Switch(context.Background(), nil, rel, nil)
	if err == nil || !strings.Contains(err.Error(), "install hook") {
		t.Fatalf("slow install: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the hook timeout did not stop the hook (took %v)", time.Since(start))
	}
}

func TestNoActivateHook(t *testing.T) {
	rel := hello(t, "1.0.0", t.TempDir(), false)
	rel.Manifest.Hooks.Activate = nil
	if _, err := New(Options{}).Switch(context.Background(), nil, rel, nil); err == nil {
		t.Fatal("a release without an activate hook switched")
	}
}

// TestHooksRunOnlyProgramsOfTheRelease: a hook whose program (after node
// variables) is outside the release, directly or through a symlink, is
// refused without running; the switch fails and names the hook. It ran
// before.
func TestHooksRunOnlyProgramsOfTheRelease(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "ran")
	d := New(Options{HookTimeout: 10 * time.Second})
	for _, argv := range [][]string{
		{"/bin/sh", "-c", "touch " + victim},
		{"hooks/../../../../../../../bin/sh", "-c", "touch " + victim},
		{"hooks/sh", "-c", "touch " + victim},
	} {
		rel := hello(t, "1.0.0", filepath.Join(t.TempDir(), "hello"), false)
		if err := os.Symlink("/bin/sh", filepath.Join(rel.Dir, "hooks", "sh")); err != nil {
			t.Fatal(err)
		}
		rel.Manifest.Hooks.Activate = argv
		_, err := d.Switch(context.Background(), nil, rel, nil)
		if err == nil || !errors.Is(err, release.ErrOutsideRelease) || !strings.Contains(err.Error(), "activate hook") {
			t.Errorf("activate %q: %v, want refused", argv, err)
		}
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("a program outside the release ran")
	}
}
