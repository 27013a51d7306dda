package fleetrepo

import (
	"os"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// TestRollbackToTheVersionTheFleetRan (issue 17, bug 3): the fleet runs
// 1.0.0; a person commits 1.1.0 and then 1.2.0 before any node moved; the
// rollout of 1.2.0 (From 1.0.0) fails. The rollback restores 1.0.0, the
// version the fleet ran, as of the commit that set it, not 1.1.0 (the
// failed commit's parent, never deployed), whose rollout would fail in turn
// and be rolled back to 1.2.0, and so on. Before, To was dropped and the
// parent restored.
func TestRollbackToTheVersionTheFleetRan(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	v11 := strings.Replace(strings.Replace(webCUE, "1.0.0", "1.1.0", 1), "batchSize: 2", "batchSize: 3", 1)
	gittest.PushFiles(t, bare, "main", map[string]string{"apps/web.cue": v11}, "web 1.1.0")
	failed := gittest.PushFiles(t, bare, "main", map[string]string{"apps/web.cue": strings.Replace(v11, "1.1.0", "1.2.0", 1)}, "web 1.2.0")
	d := openDesired(t, bare)
	h, err := d.Rollback(ctx, RollbackRequest{App: "web", Failed: plumbing.NewHash(failed), Version: "1.2.0", To: "1.0.0",
		Reason: "health check failed on n1", Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := gittest.Git(t, bare, "show", "main:apps/web.cue"); got+"\n" != webCUE {
		t.Errorf("web.cue after the rollback, want the spec the fleet ran (1.0.0, batchSize 2):\n%s", got)
	}
	msg := gittest.Git(t, bare, "log", "-1", "--format=%B", "main")
	if !strings.HasPrefix(msg, "web: roll back from 1.2.0 to 1.0.0") || !strings.Contains(msg, "Reconciler-To: 1.0.0") ||
		!strings.Contains(msg, "Reconciler-Rollback-Of: "+failed) {
		t.Errorf("rollback message:\n%s", msg)
	}
	// The rollback commit applies at once: agents see its mark.
	if m := mark(t, d, h, "web"); m == nil || m.Of != failed || m.Waves {
		t.Fatalf("mark of the rollback commit = %+v", m)
	}
}

// TestRollbackToAVersionNoCommitNames: the fleet ran a version the branch
// never named: only the version is set back.
func TestRollbackToAVersionNoCommitNames(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	failed := gittest.PushFiles(t, bare, "main", map[string]string{
		"apps/web.cue": strings.Replace(strings.Replace(webCUE, "1.0.0", "2.0.0", 1), "batchSize: 2", "batchSize: 3", 1)}, "web 2")
	d := openDesired(t, bare)
	if _, err := d.Rollback(ctx, RollbackRequest{App: "web", Failed: plumbing.NewHash(failed), To: "0.9.0"}); err != nil {
		t.Fatal(err)
	}
	got := gittest.Git(t, bare, "show", "main:apps/web.cue")
	if !strings.Contains(got, `version: "0.9.0"`) || !strings.Contains(got, "batchSize: 3") {
		t.Errorf("web.cue:\n%s", got)
	}
}

// TestRollbackMarkOf: which commits agents apply at once.
func TestRollbackMarkOf(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	d := openDesired(t, bare)
	tip, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up, err := d.SetVersion(ctx, tip, "web", "1.1.0", "", Identity{Name: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, up, "web"); m != nil {
		t.Errorf("an upgrade is marked as a rollback: %+v", m)
	}
	waves, err := d.EditApp(ctx, AppChange{Expect: up, App: "web", Set: map[string]any{"version": "1.0.0"},
		Trailers: Trailers{From: "1.1.0", To: "1.0.0", RollbackOf: up.String(), Rollout: RolloutWaves}})
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, waves, "web"); m == nil || !m.Waves || m.Of != up.String() {
		t.Errorf("rollback --waves: mark %+v", m)
	}
	if m := mark(t, d, waves, "api"); m != nil {
		t.Errorf("a rollback of web marks api: %+v", m)
	}
	// git revert of the person's upgrade (no trailers on either commit).
	work := t.TempDir()
	gittest.Git(t, work, "clone", "-q", bare, ".")
	gittest.Git(t, work, "-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "--allow-empty", "-m", "nothing")
	writeFile(t, work+"/apps/api.cue", strings.Replace(apiCUE, "3.0.0", "3.1.0", 1))
	gittest.Git(t, work, "-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-am", "api 3.1.0")
	gittest.Git(t, work, "-c", "user.name=p", "-c", "user.email=p@x", "revert", "--no-edit", "HEAD")
	gittest.Git(t, work, "push", "-q", "origin", "HEAD:main")
	revert, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, revert, "api"); m == nil || m.Waves {
		t.Errorf("git revert of api's upgrade: mark %+v", m)
	}
	// Commits of another app on top do not hide web's rollback: web's
	// version was last set by the rollback --waves commit.
	if m := mark(t, d, revert, "web"); m == nil || !m.Waves || m.Of != up.String() {
		t.Errorf("web under api's commits: mark %+v, want web's rollback --waves", m)
	}
	// Reverting that revert re-applies the upgrade: no rollback.
	gittest.Git(t, work, "-c", "user.name=p", "-c", "user.email=p@x", "revert", "--no-edit", "HEAD")
	gittest.Git(t, work, "push", "-q", "origin", "HEAD:main")
	again, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, again, "api"); m != nil {
		t.Errorf("a revert of a revert is marked as a rollback: %+v", m)
	}
	// A pause on top of a rollback does not hide it.
	paused, err := d.SetPaused(ctx, again, "web", true, "", Identity{Name: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := d.EditApp(ctx, AppChange{Expect: paused, App: "web", Set: map[string]any{"version": "1.1.0"},
		Trailers: Trailers{From: "1.0.0", To: "1.1.0", RollbackOf: again.String()}}) // 1.1.0: a version the branch had
	if err != nil {
		t.Fatal(err)
	}
	resumed, err := d.SetPaused(ctx, rb, "web", false, "", Identity{Name: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, resumed, "web"); m == nil || m.Of != again.String() || m.Waves {
		t.Errorf("a resume on top of web's rollback: mark %+v", m)
	}
}

func mark(t *testing.T, d *Desired, commit plumbing.Hash, app string) *reconciler.RollbackMark {
	t.Helper()
	var m *reconciler.RollbackMark
	err := d.View(func(r *git.Repository) error {
		var err error
		m, err = RollbackMarkOf(r, commit, app)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackToAVersionTheBranchNeverHadKeepsWaves: a commit that carries
// the rollback trailers (written by hand, or by rollback --to V --force)
// but sets a version the app never had on the branch is no return to
// something that ran: it rolls in waves under leases, not on every node at
// once. Before, the trailers alone sent 9.9.9 everywhere at once.
func TestRollbackToAVersionTheBranchNeverHadKeepsWaves(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	d := openDesired(t, bare)
	tip, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up, err := d.SetVersion(ctx, tip, "web", "1.1.0", "", Identity{Name: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	known, err := d.EditApp(ctx, AppChange{Expect: up, App: "web", Set: map[string]any{"version": "1.0.0"},
		Trailers: Trailers{From: "1.1.0", To: "1.0.0", RollbackOf: up.String()}})
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, known, "web"); m == nil || m.Waves {
		t.Errorf("a rollback to 1.0.0, which the branch had: mark %+v, want at once", m)
	}
	unknown, err := d.EditApp(ctx, AppChange{Expect: known, App: "web", Set: map[string]any{"version": "9.9.9"},
		Trailers: Trailers{From: "1.0.0", To: "9.9.9", RollbackOf: up.String()}})
	if err != nil {
		t.Fatal(err)
	}
	if m := mark(t, d, unknown, "web"); m == nil || !m.Waves {
		t.Errorf("a rollback to 9.9.9, which the branch never had: mark %+v, want a rollback in waves", m)
	}
}
