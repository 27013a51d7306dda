package fleetrepo

import (
	"errors"
	"testing"
)

// TestTwoWritersOfOneNodeDetectEachOther: two handles writing the report of
// one node (two agents with one name) both get ErrDuplicateNode once the
// chain moved under each; a single writer, and a restarted one (a new
// handle after the old one stopped), never do. Before, the first only saw
// a CAS mismatch now and then, and the second nothing.
func TestTwoWritersOfOneNodeDetectEachOther(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		a := openShared(t, url, "n1", nil)
		for v := range 3 { // one writer: never
			if err := a.WriteReport(ctx, testReport("n1", "1.0."+string(rune('0'+v)))); err != nil {
				t.Fatalf("single writer: %v", err)
			}
		}
		restarted := openShared(t, url, "n1", nil) // a stops, its successor starts
		if err := restarted.WriteReport(ctx, testReport("n1", "1.1.0")); err != nil {
			t.Fatalf("restarted writer: %v", err)
		}
		if err := restarted.WriteReport(ctx, testReport("n1", "1.1.1")); err != nil {
			t.Fatalf("restarted writer, again: %v", err)
		}
		// Now a comes back while restarted runs: two writers.
		errA := a.WriteReport(ctx, testReport("n1", "1.2.0"))
		errB := restarted.WriteReport(ctx, testReport("n1", "1.2.1"))
		for name, err := range map[string]error{"a": errA, "restarted": errB} {
			var dup *DuplicateNodeError
			if !errors.Is(err, ErrDuplicateNode) || !errors.As(err, &dup) || dup.Node != "n1" {
				t.Errorf("%s: %v, want ErrDuplicateNode", name, err)
			}
		}
	})
}
