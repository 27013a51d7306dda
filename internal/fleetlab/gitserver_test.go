package fleetlab

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// The server comes back on the same address after a restart, and a
// stalled push lands once the stall is lifted.
func TestGitServerRestartAndStall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs git http-backend")
	}
	bare := filepath.Join(t.TempDir(), "fleet.git")
	if err := InitRepo(bare, map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	g, err := ServeGit(bare)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if _, err := Git(t.TempDir(), "ls-remote", g.URL()); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := Git(t.TempDir(), "ls-remote", g.URL()); err == nil {
		t.Fatal("ls-remote worked against a stopped server")
	}
	if err := g.Restart(context.Background(), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := Git(t.TempDir(), "ls-remote", g.URL()); err != nil {
		t.Fatalf("after restart on %s: %v", g.Addr(), err)
	}

	g.StallPushes()
	done := make(chan error, 1)
	go func() { done <- Push(g.URL(), map[string]string{"a": "2"}, "second") }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, stalled := g.Pushes(); stalled > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the push never reached the server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a stalled push returned: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	g.LiftStall()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := Git(bare, "log", "-1", "--format=%s", "main"); err != nil || got != "second" {
		t.Fatalf("main = %q, %v", got, err)
	}
}
