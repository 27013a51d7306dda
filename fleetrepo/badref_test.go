package fleetrepo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// plantCommit commits files (with real git) on no branch and points ref at it.
func plantCommit(t *testing.T, bare, ref string, files map[string]string) string {
	t.Helper()
	work := t.TempDir()
	gittest.Git(t, work, "init", "-q")
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		gittest.Git(t, work, "add", name)
	}
	gittest.Git(t, work, "commit", "-q", "-m", "garbage")
	gittest.Git(t, work, "push", "-q", bare, "HEAD:"+ref)
	return gittest.RevParse(t, work, "HEAD")
}

// plantBlob points ref at a blob (not a commit).
func plantBlob(t *testing.T, bare, ref, body string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	h := gittest.Git(t, bare, "hash-object", "-w", f)
	gittest.Git(t, bare, "update-ref", ref, h)
}

// plantMissing points ref at an object the repository does not have.
func plantMissing(t *testing.T, bare, ref string) {
	t.Helper()
	p := filepath.Join(bare, ref)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Repeat("ab", 20)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBadReportsAreSkippedAndNamed: node report refs pointing at a commit
// whose report.json is not JSON, at a blob and at a missing object are
// skipped and named in BadRefs; the good reports are all read. Before, any
// of them failed Reports ("read node reports: ... object not found"), and
// with it every rollout of the fleet.
func TestBadReportsAreSkippedAndNamed(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		a := openShared(t, url, "n1", nil)
		if err := a.WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
			t.Fatal(err)
		}
		plantCommit(t, bare, NodesPrefix+"garbage", map[string]string{reportFile: "not json {"})
		plantCommit(t, bare, NodesPrefix+"nofile", map[string]string{"other.txt": "x"})
		plantBlob(t, bare, NodesPrefix+"blob", `{"node":"blob"}`)
		cli := openShared(t, url, "cli", nil)
		if _, err := cli.Reports(ctx); err != nil {
			t.Fatalf("Reports: %v", err)
		}
		// A node writes its report on: the others' garbage does not block it.
		if err := a.WriteReport(ctx, testReport("n1", "1.1.0")); err != nil {
			t.Fatal(err)
		}
		// A ref to a missing object (git itself then refuses pushes to the
		// repository, "missing necessary objects", until it is deleted).
		plantMissing(t, bare, NodesPrefix+"ghost")
		inv, err := cli.Reports(ctx)
		if err != nil {
			t.Fatalf("Reports: %v", err)
		}
		if len(inv) != 1 || inv["n1"].Apps["web"].Version != "1.1.0" {
			t.Fatalf("inventory = %+v, want n1 only", inv)
		}
		bad := cli.BadRefs()
		names := map[string]string{}
		for _, b := range bad {
			names[b.Ref] = b.Err
		}
		for _, n := range []string{"garbage", "nofile", "blob", "ghost"} {
			if names[NodesPrefix+n] == "" {
				t.Errorf("bad ref %s not named; BadRefs = %+v", n, bad)
			}
		}
		gittest.Git(t, bare, "update-ref", "-d", NodesPrefix+"garbage")
		if _, err := cli.Reports(ctx); err != nil {
			t.Fatal(err)
		}
		for _, b := range cli.BadRefs() {
			if b.Ref == NodesPrefix+"garbage" {
				t.Errorf("deleted ref still named bad: %+v", b)
			}
		}
	})
}

// TestBadLeaseCanBeBroken: a lease ref whose lease.json is garbage (or that
// points at a blob) is skipped by Leases and named by BadRefs, and Break,
// the documented recovery, overwrites it with a free lease that can be
// acquired. Before, Leases failed for every app and Break returned the
// decode error.
func TestBadLeaseCanBeBroken(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		op := openShared(t, url, "op", nil)
		if _, err := op.Acquire(ctx, "db", 0, "n1", "r1", time.Minute); err != nil {
			t.Fatal(err)
		}
		plantCommit(t, bare, LeasePrefix+"web/0", map[string]string{leaseFile: "\x00garbage"})
		plantBlob(t, bare, LeasePrefix+"web/1", "not a commit")
		leases, err := op.Leases(ctx, "")
		if err != nil || len(leases) != 1 || leases[0].App != "db" {
			t.Fatalf("Leases = %+v, %v; want db's only", leases, err)
		}
		if bad := op.BadRefs(); len(bad) != 2 {
			t.Fatalf("BadRefs = %+v, want web/0 and web/1", bad)
		}
		for slot := range 2 {
			if _, err := op.Break(ctx, "web", slot); err != nil {
				t.Fatalf("break web/%d: %v", slot, err)
			}
			if _, err := openShared(t, url, "n2", nil).Acquire(ctx, "web", slot, "n2", "r2", time.Minute); err != nil {
				t.Fatalf("acquire web/%d after the break: %v", slot, err)
			}
		}
		if _, err := op.Leases(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if bad := op.BadRefs(); len(bad) != 0 {
			t.Fatalf("BadRefs after the breaks = %+v", bad)
		}
	})
}

// TestGarbageRecordEventIsSkipped: a rollout record with a commit whose
// event.json is garbage, or no rollout event, reads on without it (named
// by BadRefs), and appends go on. Before, the record did not read at all.
func TestGarbageRecordEventIsSkipped(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		sh := openShared(t, url, "n1", nil)
		appendEv := func(typ string) {
			t.Helper()
			err := sh.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) {
				return &reconciler.Event{Type: typ, Rollout: "r1", Target: "1.1.0"}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		appendEv(reconciler.EventStarted)
		tip := gittest.RevParse(t, bare, RolloutPrefix+"web")
		work := gittest.Clone(t, bare, "main")
		gittest.Git(t, work, "fetch", "-q", "origin", RolloutPrefix+"web")
		gittest.Git(t, work, "checkout", "-q", "FETCH_HEAD")
		for i, body := range []string{"garbage {", `{"foo": 1}`} {
			if err := os.WriteFile(filepath.Join(work, eventFile), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			gittest.Git(t, work, "add", eventFile)
			gittest.Git(t, work, "commit", "-q", "-m", fmt.Sprintf("garbage %d", i))
		}
		gittest.Git(t, work, "push", "-q", "origin", "HEAD:"+RolloutPrefix+"web")
		other := openShared(t, url, "n2", nil)
		events, err := other.Record(ctx, "web")
		if err != nil || len(events) != 1 || events[0].Type != reconciler.EventStarted {
			t.Fatalf("Record = %+v, %v (tip was %s)", events, err, tip)
		}
		if bad := other.BadRefs(); len(bad) == 0 || bad[0].Ref != RolloutPrefix+"web" {
			t.Fatalf("BadRefs = %+v", bad)
		}
		appendEv(reconciler.EventCompleted)
		if events, err = other.Record(ctx, "web"); err != nil || len(events) != 2 {
			t.Fatalf("after an append: %+v, %v", events, err)
		}
	})
}
