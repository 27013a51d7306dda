package fleetrepo

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

func TestFetchFollowsAndRefusesForcePushBackwards(t *testing.T) {
	transports(t, map[string]string{"fleet.cue": "package fleet\n"}, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		d := openDesired(t, url)
		first, err := d.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := gittest.RevParse(t, bare, "main"); first.String() != want {
			t.Fatalf("Fetch = %s, want %s", first, want)
		}
		second := gittest.PushFiles(t, url, "main", map[string]string{"b.cue": "package fleet\n"}, "second")
		got, err := d.Fetch(ctx)
		if err != nil || got.String() != second {
			t.Fatalf("Fetch after push = %s, %v; want %s", got, err, second)
		}
		if _, err := d.CommitObject(got); err != nil {
			t.Fatalf("fetched commit not in cache: %v", err)
		}

		gittest.ForcePush(t, url, "main", first.String())
		kept, err := d.Fetch(ctx)
		var nd *NotDescendantError
		if !errors.As(err, &nd) || !nd.Behind {
			t.Fatalf("Fetch after force-push backwards: err = %v, want *NotDescendantError moving backwards", err)
		}
		if kept.String() != second || d.Accepted().String() != second {
			t.Fatalf("Fetch kept %s (accepted %s), want the last good %s", kept, d.Accepted(), second)
		}
		if !strings.Contains(err.Error(), "backwards") || !strings.Contains(err.Error(), "keeping "+second[:12]) {
			t.Errorf("message does not say what happened: %v", err)
		}
		t.Log(err)
	})
}

func TestFetchRefusesSidewaysAndSurvivesRestart(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	ctx := testContext(t)
	cache := t.TempDir()
	d, err := OpenDesired(ctx, DesiredOptions{URL: "file://" + bare, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	good, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An unrelated history replaces main.
	work := gittest.Clone(t, bare, "other")
	gittest.Commit(t, work, map[string]string{"x": "x\n"}, "unrelated root")
	gittest.Git(t, work, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/main")

	// A new handle on the same cache (an agent restart) still refuses it.
	d2, err := OpenDesired(ctx, DesiredOptions{URL: bare, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := d2.Fetch(ctx)
	var nd *NotDescendantError
	if !errors.As(err, &nd) || nd.Behind || kept != good {
		t.Fatalf("Fetch = %s, %v; want %s kept and a sideways *NotDescendantError", kept, err, good)
	}
}

// Descends answers from the cache: a tip descends from its ancestors, not
// the other way round, and from nothing it has not fetched.
func TestDescends(t *testing.T) {
	bare := gittest.NewBare(t, map[string]string{"a.txt": "1"})
	ctx := testContext(t)
	d := openDesired(t, bare)
	first, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second := plumbing.NewHash(gittest.PushFiles(t, bare, "main", map[string]string{"a.txt": "2"}, "two"))
	if d.Descends(first, second) {
		t.Fatal("a tip that has not fetched a newer commit descends from it")
	}
	if tip, err := d.Fetch(ctx); err != nil || tip != second {
		t.Fatalf("Fetch = %s, %v", tip, err)
	}
	if !d.Descends(second, first) || d.Descends(first, second) || !d.Descends(first, first) {
		t.Fatal("Descends does not follow the history")
	}
}
