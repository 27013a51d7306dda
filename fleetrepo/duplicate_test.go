package fleetrepo

import (
	"errors"
	"testing"
	"time"
)

// openInstance opens a handle writing reports as instance.
func openInstance(t *testing.T, url, instance string) *Shared {
	t.Helper()
	sh, err := OpenShared(testContext(t), SharedOptions{URL: url, Identity: Identity{Name: "n1"}, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// TestTwoWritersOfOneNodeDetectEachOther: two handles writing the report of
// one node (two agents with one name) both get ErrDuplicateNode once the
// chain moved under each; a single writer, and a restarted one (a new
// handle after the old one stopped), never do. Before, the first only saw
// a CAS mismatch now and then, and the second nothing.
func TestTwoWritersOfOneNodeDetectEachOther(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		a := openInstance(t, url, "a")
		for v := range 3 { // one writer: never
			if err := a.WriteReport(ctx, testReport("n1", "1.0."+string(rune('0'+v)))); err != nil {
				t.Fatalf("single writer: %v", err)
			}
		}
		// Another instance's first write beside a's fresh report: a
		// second agent with the name, told before it acts.
		if err := a.WriteReport(ctx, testReport("n3", "1.0.2")); err != nil {
			t.Fatal(err)
		}
		if err := openInstance(t, url, "b").WriteReport(ctx, testReport("n3", "1.0.2")); !errors.Is(err, ErrDuplicateNode) {
			t.Fatalf("another instance's first write beside a fresh report: %v, want ErrDuplicateNode", err)
		}
		// Beside a report older than two refreshes: a predecessor that is
		// gone (its state directory lost), not a live agent.
		old := testReport("n2", "1.0.2")
		old.Time = old.Time.Add(-2*DefaultReportRefresh - time.Minute)
		if err := openInstance(t, url, "a").WriteReport(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := openInstance(t, url, "c").WriteReport(ctx, testReport("n2", "1.0.2")); err != nil {
			t.Fatalf("a new instance beside a stale report: %v", err)
		}
		restarted := openInstance(t, url, "a") // a stops, its successor (same state directory) starts
		if err := restarted.WriteReport(ctx, testReport("n1", "1.1.0")); err != nil {
			t.Fatalf("restarted writer: %v", err)
		}
		if err := restarted.WriteReport(ctx, testReport("n1", "1.1.1")); err != nil {
			t.Fatalf("restarted writer, again: %v", err)
		}
		// A second agent (its own state directory, so its own instance)
		// starts while restarted runs: each finds out, the newcomer at
		// its first write, restarted at its next.
		other := openInstance(t, url, "other")
		errA := other.WriteReport(ctx, testReport("n1", "1.2.0"))
		errB := restarted.WriteReport(ctx, testReport("n1", "1.2.1"))
		for name, err := range map[string]error{"other": errA, "restarted": errB} {
			var dup *DuplicateNodeError
			if !errors.Is(err, ErrDuplicateNode) || !errors.As(err, &dup) || dup.Node != "n1" {
				t.Errorf("%s: %v, want ErrDuplicateNode", name, err)
			}
		}
	})
}
