package rollout

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// TestStarvedHolderIsNotAFailedVersion (issue 13 §2, docs/rollouts.md "Slow
// is not failed"), over real coordinators and a bare repository: a holder
// whose lease an observer sees expire is recorded lost; it is retried under
// a fresh lease and its success counts, and the rollout goes on with no
// rollback. Only a failure the holder reports fails the version.
func TestStarvedHolderIsNotAFailedVersion(t *testing.T) {
	for _, c := range []struct {
		name   string
		report reconciler.AppReport // what the retried holder's switch ends in
		err    error
		failed bool // the version failed: a rollback is asked for
	}{
		{name: "starved, then healthy", report: healthy("1.1.0")},
		{name: "starved, then its health check fails", report: reconciler.AppReport{Version: "1.0.0", State: reconciler.AppFailed},
			err: errors.New("health check of web 1.1.0 failed: 503"), failed: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			repo := gittest.NewBare(t, nil)
			var asked fleetrepo.RollbackRequest
			rollback := func(_ context.Context, req fleetrepo.RollbackRequest) (string, error) {
				asked = req
				return "", ErrNoRollback
			}
			// a and b are the plan (two waves); o observes (the agent of a
			// node the app does not target keeps the books too).
			a, b := newNode(t, repo, "a", rollback), newNode(t, repo, "o", rollback)
			in := input(app(true), "a", "z")
			pa, err := a.coord.Permit(ctx, in)
			if err != nil || pa.Lease == nil {
				t.Fatalf("a: %+v, %v", pa, err)
			}
			if _, err := b.coord.Permit(ctx, in); err != nil {
				t.Fatal(err)
			}
			// a is starved past its TTL: on its own clock and on o's (in a
			// plan of fewer than reconciler.Judges nodes, any node judges).
			a.clock.advance(31 * time.Second)
			b.clock.advance(31 * time.Second)
			if _, err := b.coord.Permit(ctx, in); err != nil {
				t.Fatal(err)
			}
			if r := latest(t, b); len(r.Lost["a"]) != 1 || hasFailed(r, "a") || r.Ended() {
				t.Fatalf("after a's lease expired: lost %v, failed %v, outcome %q; want lost once, not failed, going on", r.Lost, r.Failed, r.Outcome)
			}
			pa.Lease.Finish(ctx, healthy("1.1.0"), nil) // the starved switch ends: nothing recorded (its fence is refused)
			retry, err := a.coord.Permit(ctx, in)
			if err != nil || retry.Lease == nil || retry.Version != "1.1.0" {
				t.Fatalf("a retried: %+v, %v; want a fresh lease for 1.1.0", retry, err)
			}
			retry.Lease.Finish(ctx, c.report, c.err)
			r := latest(t, a)
			if c.failed {
				if !hasFailed(r, "a") {
					t.Fatalf("a reported its failure: not recorded failed: %+v", r)
				}
				if _, err := b.coord.Permit(ctx, in); err != nil { // b records failed, asks for the rollback
					t.Fatal(err)
				}
				if asked.App != "web" || asked.Node != "a" {
					t.Fatalf("a reported failure asked no rollback: %+v", asked)
				}
				return
			}
			if r.Done["a"] != retry.Lease.Token() || hasFailed(r, "a") {
				t.Fatalf("a's retry: done %q failed %v; want done under %.8s", r.Done["a"], r.Failed, retry.Lease.Token())
			}
			if asked.App != "" {
				t.Fatalf("a starved holder asked for a rollback: %+v", asked)
			}
		})
	}
}
