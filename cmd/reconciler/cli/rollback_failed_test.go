package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// TestRollbackToAFailedVersionIsRefused: a version whose rollout failed or
// was rolled back, and that no node runs, is in the history but is no
// place to go back to: a rollback applies on every node at once. rollback
// --to refuses it (exit 1, naming the failure and the possible versions)
// unless --force. Before, only versions absent from the history were
// refused, and --to 1.1.0 here went to every node at once.
func TestRollbackToAFailedVersionIsRefused(t *testing.T) {
	f := newFixture(t)
	up := f.push("main", f.spec("1.1.0", ""), "hello 1.1.0")
	f.push("main", f.spec("1.0.0", ""), "roll back hello")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: f.repo, Identity: fleetrepo.Identity{Name: "n1"}})
	must(t, err)
	for _, e := range []reconciler.Event{
		{Type: reconciler.EventStarted, Rollout: up, By: "n1", Time: time.Now(), Target: "1.1.0", From: "1.0.0", Waves: [][]string{{"n1"}, {"n2", "n3"}}},
		{Type: reconciler.EventFailed, Rollout: up, By: "n1", Time: time.Now(), Node: "n1", Reason: "health check failed: 503"},
		{Type: reconciler.EventRolledBack, Rollout: up, By: "n1", Time: time.Now(), Reason: "health check failed: 503"},
	} {
		must(t, sh.Append(ctx, "hello", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }))
	}
	before := gittest.Git(t, f.repo, "rev-parse", "main")
	r := f.run("rollback", "hello", "--to", "1.1.0", "--repo", f.repo)
	if r.code != 1 || !strings.Contains(r.stderr, "hello 1.1.0 failed its rollout (health check failed: 503)") ||
		!strings.Contains(r.stderr, "--force") {
		t.Fatalf("rollback --to a failed version: exit %d\n%s", r.code, r.stderr)
	}
	if after := gittest.Git(t, f.repo, "rev-parse", "main"); after != before {
		t.Fatalf("a refused rollback committed %s", after)
	}
	if r := f.run("rollback", "hello", "--to", "1.1.0", "--force", "--repo", f.repo); r.code != 0 {
		t.Fatalf("rollback --to a failed version --force: exit %d\n%s", r.code, r.stderr)
	}
}
