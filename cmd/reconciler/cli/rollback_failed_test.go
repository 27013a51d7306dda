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

// TestRollbackAfterARolledBackRolloutGoesBackFurther: the fleet ran 1.0.0,
// then 1.1.0 (completed); 1.2.0 failed and was rolled back to 1.1.0 by a
// commit. `rollback hello` goes back to 1.0.0, what the fleet ran before
// 1.1.0, not to 1.2.0 (the parent of the commit that set 1.1.0, the version
// that just failed), which it committed to every node at once. --to ""
// is a usage error, not the default.
func TestRollbackAfterARolledBackRolloutGoesBackFurther(t *testing.T) {
	f := newFixture(t)
	up11 := f.push("main", f.spec("1.1.0", ""), "hello 1.1.0")
	up12 := f.push("main", f.spec("1.2.0", ""), "hello 1.2.0")
	f.push("main", f.spec("1.1.0", ""), "roll hello back to 1.1.0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: f.repo, Identity: fleetrepo.Identity{Name: "n1"}})
	must(t, err)
	now := time.Now()
	for _, e := range []reconciler.Event{
		// An earlier try of 1.1.0 from 0.9.0 that failed is not how the
		// fleet came to run 1.1.0.
		{Type: reconciler.EventStarted, Rollout: up11, By: "n1", Time: now, Target: "1.1.0", From: "0.9.0", Waves: [][]string{{"n1"}}},
		{Type: reconciler.EventFailed, Rollout: up11, By: "n1", Time: now, Node: "n1", Reason: "disk full"},
		{Type: reconciler.EventStarted, Rollout: up11, By: "n1", Time: now, Target: "1.1.0", From: "1.0.0", Waves: [][]string{{"n1"}}},
		{Type: reconciler.EventNodeDone, Rollout: up11, By: "n1", Time: now, Node: "n1"},
		{Type: reconciler.EventWaveDone, Rollout: up11, By: "n1", Time: now, Wave: 0},
		{Type: reconciler.EventCompleted, Rollout: up11, By: "n1", Time: now},
		{Type: reconciler.EventStarted, Rollout: up12, By: "n1", Time: now, Target: "1.2.0", From: "1.1.0", Waves: [][]string{{"n1"}}},
		{Type: reconciler.EventFailed, Rollout: up12, By: "n1", Time: now, Node: "n1", Reason: "health check failed: 503"},
		{Type: reconciler.EventRolledBack, Rollout: up12, By: "n1", Time: now, Reason: "health check failed: 503"},
	} {
		must(t, sh.Append(ctx, "hello", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }))
	}
	before := gittest.Git(t, f.repo, "rev-parse", "main")
	if r := f.run("rollback", "hello", "--to", "", "--repo", f.repo); r.code != 2 || !strings.Contains(r.stderr, "--to") {
		t.Errorf("rollback --to '': exit %d, want 2 naming --to\n%s", r.code, r.stderr)
	}
	if after := gittest.Git(t, f.repo, "rev-parse", "main"); after != before {
		t.Fatalf("rollback --to '' committed %s", after)
	}
	r := f.run("rollback", "hello", "--repo", f.repo, "--output", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"to": "1.0.0"`) {
		t.Fatalf("rollback after a rolled-back rollout: exit %d, want to 1.0.0\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestRollbackWithoutARecordRefusesAFailedParent: with no rollout that
// brought the current version in the record, rollback restores the version
// before the commit that set it; when that version is one whose rollout
// failed (the commit set the current version back after it), rollback
// refuses it like --to does, unless --force.
func TestRollbackWithoutARecordRefusesAFailedParent(t *testing.T) {
	f := newFixture(t)
	up := f.push("main", f.spec("1.1.0", ""), "hello 1.1.0")
	f.push("main", f.spec("1.0.0", ""), "back to 1.0.0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: f.repo, Identity: fleetrepo.Identity{Name: "n1"}})
	must(t, err)
	for _, e := range []reconciler.Event{
		{Type: reconciler.EventStarted, Rollout: up, By: "n1", Time: time.Now(), Target: "1.1.0", From: "1.0.0", Waves: [][]string{{"n1"}}},
		{Type: reconciler.EventFailed, Rollout: up, By: "n1", Time: time.Now(), Node: "n1", Reason: "health check failed: 503"},
	} {
		must(t, sh.Append(ctx, "hello", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }))
	}
	r := f.run("rollback", "hello", "--repo", f.repo)
	if r.code != 1 || !strings.Contains(r.stderr, "hello 1.1.0 failed its rollout") {
		t.Fatalf("rollback to a failed parent: exit %d\n%s", r.code, r.stderr)
	}
	if r := f.run("rollback", "hello", "--force", "--repo", f.repo); r.code != 0 {
		t.Fatalf("rollback --force: exit %d\n%s", r.code, r.stderr)
	}
}
