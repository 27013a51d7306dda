package fleetrepo

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// TestApprovalsOf: the approval commits of a rollout between its commit and
// the tip, oldest first, including one merged from a pull request's branch;
// approvals of another app or rollout, a malformed wave and trailers
// quoted in a body are none.
func TestApprovalsOf(t *testing.T) {
	bare := gittest.NewBare(t, fleetFiles())
	ctx := testContext(t)
	rollout := gittest.PushFiles(t, bare, "main", map[string]string{"apps/web.cue": strings.Replace(webCUE, "1.0.0", "1.1.0", 1)}, "web 1.1.0")
	d := openDesired(t, bare)
	tip, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	approve := func(app, of, wave string) plumbing.Hash {
		t.Helper()
		h, err := d.Commit(ctx, CommitRequest{Expect: tip, Message: fmt.Sprintf("%s: approve up to wave %s", app, wave),
			Author: Identity{Name: "Ada", Email: "ada@example.com"}, Trailers: Trailers{App: app, Promote: of, Wave: wave}})
		if err != nil {
			t.Fatal(err)
		}
		tip = h
		return h
	}
	first := approve("web", rollout, "2")
	approve("api", rollout, "3")                          // another app
	approve("web", strings.Repeat("e", 40), "3")          // another rollout
	approve("web", rollout, "two")                        // malformed
	approve("web", rollout, "0")                          // no wave
	if _, err := d.Commit(ctx, CommitRequest{Expect: tip, // quoted, not a trailer
		Message: "web: note\n\nReconciler-App: web\nReconciler-Promote: " + rollout + "\nReconciler-Wave: 5\n\nthat was a quote"}); err != nil {
		t.Fatal(err)
	}
	// A pull request's branch with an approval, merged with a merge commit.
	work := gittest.Clone(t, bare, "main")
	gittest.Git(t, work, "checkout", "-q", "-b", "approve-3", "HEAD~2")
	gittest.Git(t, work, "commit", "-q", "--allow-empty", "-m", "web: approve wave 3", "-m",
		"Reconciler-App: web\nReconciler-Promote: "+rollout+"\nReconciler-Wave: 3")
	merged := gittest.RevParse(t, work, "HEAD")
	gittest.Git(t, work, "checkout", "-q", "main")
	gittest.Git(t, work, "merge", "-q", "--no-ff", "-m", "Merge pull request: approve wave 3", "approve-3")
	gittest.Git(t, work, "push", "-q", "origin", "main")
	if tip, err = d.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := d.Approvals(tip.String(), "web", rollout)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Commit != first.String() || got[0].Wave != 1 || got[0].By != "Ada <ada@example.com>" ||
		got[1].Commit != merged || got[1].Wave != 2 {
		t.Fatalf("approvals = %+v, want wave index 1 by Ada in %s, then 2 in the merged %s", got, first, merged)
	}
	// The walk stops at the rollout's commit: an older rollout's approval
	// (naming it) before it is not read.
	if got, err := d.Approvals(rollout, "web", rollout); err != nil || len(got) != 0 {
		t.Fatalf("approvals at the rollout's own commit = %+v, %v, want none", got, err)
	}
}
