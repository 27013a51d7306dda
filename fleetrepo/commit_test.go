package fleetrepo

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/go-git/go-git/v5/plumbing"
)

const webCUE = `package fleet

// Web front end. Owned by the web team.
apps: web: {
	version: "1.0.0" // pinned until the CDN switch
	rollout: batchSize: 2
}
`

const apiCUE = `package fleet

apps: api: version: "3.0.0"
`

func fleetFiles() map[string]string {
	return map[string]string{"apps/web.cue": webCUE, "apps/api.cue": apiCUE, "README.md": "fleet\n"}
}

func TestSetVersionIsACompareAndSwapCommit(t *testing.T) {
	transports(t, fleetFiles(), func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		d := openDesired(t, url)
		tip, err := d.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h, err := d.SetVersion(ctx, tip, "web", "1.1.0", "release 1.1", Identity{Name: "Ada", Email: "ada@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if got := gittest.RevParse(t, bare, "main"); got != h.String() {
			t.Fatalf("main = %s, want %s", got, h)
		}
		want := strings.Replace(webCUE, `"1.0.0" // pinned`, `"1.1.0" // pinned`, 1)
		if got := gittest.Git(t, bare, "show", "main:apps/web.cue"); got+"\n" != want {
			t.Errorf("web.cue after bump:\n%s", got)
		}
		msg := gittest.Git(t, bare, "log", "-1", "--format=%an <%ae>%n%B", "main")
		for _, line := range []string{"Ada <ada@example.com>", "web: upgrade from 1.0.0 to 1.1.0",
			"Reconciler-App: web", "Reconciler-From: 1.0.0", "Reconciler-To: 1.1.0", "Reconciler-Reason: release 1.1"} {
			if !strings.Contains(msg, line) {
				t.Errorf("commit lacks %q:\n%s", line, msg)
			}
		}
		gittest.Git(t, bare, "fsck", "--strict")
		// A second writer on the old tip loses.
		if _, err := d.SetPaused(ctx, tip, "web", true, "", Identity{}); !errors.Is(err, ErrConflict) {
			t.Fatalf("commit on a stale tip = %v, want ErrConflict", err)
		}
	})
}

func TestConcurrentCommitsOneWinner(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	const n = 6
	writers := make([]*Desired, n)
	var tip plumbing.Hash
	for i := range writers { // every writer sees the same tip first
		writers[i] = openDesired(t, bare)
		h, err := writers[i].Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tip = h
	}
	var wg sync.WaitGroup
	results := make([]error, n)
	for i, d := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Different content: identical commits would be one object,
			// and every writer of it rightly told it landed.
			_, results[i] = d.SetVersion(ctx, tip, "api", fmt.Sprintf("3.1.%d", i), "", Identity{Name: "n"})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range results {
		if err == nil {
			wins++
		} else if !errors.Is(err, ErrConflict) {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won, want exactly 1", wins)
	}
}

func TestRollback(t *testing.T) {
	transports(t, fleetFiles(), func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		person := gittest.PushFiles(t, url, "main", map[string]string{
			"apps/web.cue": strings.Replace(webCUE, "1.0.0", "2.0.0", 1)}, "web 2.0.0")
		agents := []*Desired{openDesired(t, url), openDesired(t, url)}
		req := RollbackRequest{App: "web", Failed: plumbing.NewHash(person), Reason: "health check failed on n3", Node: "n3"}
		h, err := agents[0].Rollback(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if got := gittest.Git(t, bare, "show", "main:apps/web.cue"); got+"\n" != webCUE {
			t.Errorf("web.cue after rollback:\n%s", got)
		}
		msg := gittest.Git(t, bare, "log", "-1", "--format=%B", "main")
		if !strings.HasPrefix(msg, `Revert "web 2.0.0"`) || !strings.Contains(msg, "Reconciler-Rollback-Of: "+person) ||
			!strings.Contains(msg, "Reconciler-To: 1.0.0") || !strings.Contains(msg, "Reconciler-Node: n3") {
			t.Errorf("rollback message:\n%s", msg)
		}
		if _, err := agents[1].Rollback(ctx, req); !errors.Is(err, ErrAlreadyRolledBack) {
			t.Fatalf("second rollback = %v, want ErrAlreadyRolledBack", err)
		}
		changes, err := agents[0].Log(ctx, LogOptions{App: "web"})
		// The rollback, the person's bump (read from its diff), and the
		// initial commit that introduced web.
		if err != nil || len(changes) != 3 || changes[0].Commit != h || changes[1].Trailers.To != "2.0.0" ||
			changes[1].Trailers.From != "1.0.0" || changes[2].Trailers.To != "1.0.0" {
			t.Fatalf("Log = %+v, %v", changes, err)
		}
	})
}

func TestRollbackEditsWhenTheCommitTouchedMore(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	failed := gittest.PushFiles(t, bare, "main", map[string]string{
		"apps/web.cue": strings.Replace(webCUE, "1.0.0", "2.0.0", 1),
		"apps/api.cue": strings.Replace(apiCUE, "3.0.0", "3.1.0", 1)}, "web 2 and api 3.1")
	d := openDesired(t, bare)
	if _, err := d.Rollback(ctx, RollbackRequest{App: "web", Failed: plumbing.NewHash(failed)}); err != nil {
		t.Fatal(err)
	}
	if got := gittest.Git(t, bare, "show", "main:apps/api.cue"); !strings.Contains(got, "3.1.0") {
		t.Errorf("api was rolled back too:\n%s", got)
	}
	if got := gittest.Git(t, bare, "show", "main:apps/web.cue"); got+"\n" != webCUE {
		t.Errorf("web.cue after rollback:\n%s", got)
	}
	if msg := gittest.Git(t, bare, "log", "-1", "--format=%s", "main"); msg != "web: roll back from 2.0.0 to 1.0.0" {
		t.Errorf("subject = %q", msg)
	}
}

func TestRollbackLosesToPeople(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	failed := gittest.PushFiles(t, bare, "main", map[string]string{"apps/web.cue": strings.Replace(webCUE, "1.0.0", "2.0.0", 1)}, "web 2")
	gittest.PushFiles(t, bare, "main", map[string]string{"apps/web.cue": strings.Replace(webCUE, "1.0.0", "2.0.1", 1)}, "web 2.0.1 fixes it")
	d := openDesired(t, bare)
	if _, err := d.Rollback(ctx, RollbackRequest{App: "web", Failed: plumbing.NewHash(failed)}); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("Rollback = %v, want ErrSuperseded", err)
	}
}

func TestEditAppToANewBranch(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	d := openDesired(t, bare)
	tip, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	change := AppChange{Expect: tip, App: "web", Set: map[string]any{"version": "1.2.0"}, Branch: "upgrade-web-1.2.0"}
	h, err := d.EditApp(ctx, change)
	if err != nil {
		t.Fatal(err)
	}
	if got := gittest.RevParse(t, bare, "upgrade-web-1.2.0"); got != h.String() || gittest.RevParse(t, bare, "main") != tip.String() {
		t.Fatalf("branch at %s (want %s), main moved: %s", got, h, gittest.RevParse(t, bare, "main"))
	}
	if d.Accepted() != tip {
		t.Errorf("a commit to another branch moved the accepted tip")
	}
	change.Set["version"] = "1.2.1"
	if _, err := d.EditApp(ctx, change); !errors.Is(err, ErrConflict) {
		t.Fatalf("second commit to the same new branch = %v, want ErrConflict", err)
	}
}

// TestParseTrailersReadsTheLastParagraphOnly: a trailer quoted in a
// person's body is not a trailer (before, a body citing
// "Reconciler-Rollback-Of: <c>" made checkRollbackNeeded believe c was
// already rolled back), and a value longer than bufio.Scanner's 64 KiB token
// no longer drops every trailer. Found by FuzzTrailers.
func TestParseTrailersReadsTheLastParagraphOnly(t *testing.T) {
	quoted := "web: fix\n\nUndoes the Reconciler-Rollback-Of: 0123abcd written by n2\nReconciler-Node: n2\n\nSigned-off-by: Ada\n"
	if got := ParseTrailers(quoted); got != (Trailers{}) {
		t.Errorf("trailers quoted in the body were read: %+v", got)
	}
	if got := ParseTrailers("Reconciler-App: web\n"); got != (Trailers{}) {
		t.Errorf("a subject was read as a trailer: %+v", got)
	}
	long := strings.Repeat("x", 70_000)
	msg := commitMessage("web: set version\n\nReconciler-App: quoted", Trailers{App: "web", Reason: long})
	if got := ParseTrailers(msg); got.App != "web" || got.Reason != long {
		t.Errorf("ParseTrailers(message with a 70,000-byte reason) = App %q, Reason of %d bytes", got.App, len(got.Reason))
	}
}
