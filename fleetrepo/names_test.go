package fleetrepo

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// TestInvalidSharedRefsAreIgnored plants refs whose names are no valid node,
// app or lease slot (spec.CheckName): they are left out of the inventory and
// the leases with one warning each, never planned. Before, the inventory
// held nodes called "a/b", "-x" and "Ü".
func TestInvalidSharedRefsAreIgnored(t *testing.T) {
	ctx := testContext(t)
	bare := gittest.NewBare(t, nil)
	if err := openShared(t, bare, "n1", nil).WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
		t.Fatal(err)
	}
	tip := gittest.RevParse(t, bare, NodesPrefix+"n1")
	bad := []string{NodesPrefix + "a/b", NodesPrefix + "-x", NodesPrefix + "\u00dc", NodesPrefix + "n2/extra",
		LeasePrefix + "a/b/0", LeasePrefix + "-web/0"}
	for _, ref := range bad {
		gittest.Git(t, bare, "update-ref", ref, tip)
	}
	var logs bytes.Buffer
	sh, err := OpenShared(ctx, SharedOptions{URL: bare, Identity: Identity{Name: "cli"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		inv, err := sh.Reports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv) != 1 || inv["n1"].Node != "n1" {
			t.Fatalf("inventory = %v, want only n1", inv)
		}
		leases, err := sh.Leases(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(leases) != 0 {
			t.Fatalf("leases = %+v, want none", leases)
		}
	}
	for _, ref := range bad {
		if n := strings.Count(logs.String(), "ref="+ref+" "); n != 1 {
			t.Errorf("%d warnings naming %s, want 1:\n%s", n, ref, logs.String())
		}
	}
}
