package fleetrepo

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// TestDesiredFetchOfAMovedBranchIsOneUploadPack: over smart HTTP, reading a
// tracked branch that moved costs the ref listing and one POST
// git-upload-pack, no second ref advertisement (go-git's Remote.Fetch
// starts with one: 2 advertisements and 1 upload-pack before).
func TestDesiredFetchOfAMovedBranchIsOneUploadPack(t *testing.T) {
	ctx := testContext(t)
	bare := gittest.NewBare(t, fleetFiles())
	url, reqs := gittest.ServeCounted(t, bare)
	d := openDesired(t, url)
	if _, err := d.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		want := gittest.PushFiles(t, bare, "main", map[string]string{"notes.txt": fmt.Sprintf("change %d\n", i)}, "move")
		before := reqs.Counts()
		tip, err := d.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := reqs.Counts().Sub(before)
		t.Logf("Desired.Fetch of a moved branch: %s", got)
		if got.Adverts != 1 || got.Fetches != 1 || got.Total() != 2 {
			t.Fatalf("Desired.Fetch of a moved branch: %s, want 1 ref advertisement and 1 upload-pack", got)
		}
		if tip.String() != want {
			t.Fatalf("Fetch = %s, want %s", tip, want)
		}
		text, err := d.s.readFile(tip, "notes.txt")
		if err != nil || string(text) != fmt.Sprintf("change %d\n", i) {
			t.Fatalf("notes.txt at the fetched tip = %q, %v", text, err)
		}
	}
	before := reqs.Counts()
	if _, err := d.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if got := reqs.Counts().Sub(before); got.Total() != 1 || got.Adverts != 1 {
		t.Fatalf("Desired.Fetch of an unchanged branch: %s, want the listing only", got)
	}
}

// TestSnapshotOfMovedRefsIsOneUploadPack: a Snapshot of an app whose lease
// and record moved lists the refs once and fetches both in one POST
// git-upload-pack; the reads under it ask nothing more. The reader's cache
// is in memory (the storer without a packfile writer).
func TestSnapshotOfMovedRefsIsOneUploadPack(t *testing.T) {
	ctx := testContext(t)
	url, reqs := gittest.ServeCounted(t, gittest.NewBare(t, nil))
	a, b := openShared(t, url, "a", nil), openShared(t, url, "b", nil)
	l, err := a.Acquire(ctx, "web", 0, "a", "r1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if l, err = a.Renew(ctx, l); err != nil {
			t.Fatal(err)
		}
		appendEvent(t, a, "web", fmt.Sprintf("r%d", i))
		before := reqs.Counts()
		sctx, err := b.Snapshot(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		leases, err := b.Leases(sctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		events, err := b.Record(sctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		got := reqs.Counts().Sub(before)
		t.Logf("Snapshot, Leases and Record after a renewal and an append: %s", got)
		if got.Adverts != 1 || got.Fetches != 1 || got.Total() != 2 {
			t.Fatalf("Snapshot, Leases and Record after a renewal and an append: %s, want 1 ref advertisement and 1 upload-pack", got)
		}
		if len(leases) != 1 || leases[0].Token != l.Token || len(events) != i+1 {
			t.Fatalf("read through the snapshot: leases %+v (want token %s), %d events (want %d)", leases, l.Token, len(events), i+1)
		}
	}
}

// TestDirectFetchResolvesDeltas: a fetch against haves whose new files
// are near copies of the old ones (a pack of deltas, ofs-delta against
// objects of the same pack) is resolved and readable, with the cache on
// disk and in memory.
func TestDirectFetchResolvesDeltas(t *testing.T) {
	for _, cacheDir := range []string{"disk", "memory"} {
		t.Run(cacheDir, func(t *testing.T) {
			ctx := testContext(t)
			bare := gittest.NewBare(t, nil)
			url := gittest.Serve(t, bare)
			opts := DesiredOptions{URL: url}
			if cacheDir == "disk" {
				opts.CacheDir = t.TempDir()
			}
			d, err := OpenDesired(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Fetch(ctx); err != nil {
				t.Fatal(err)
			}
			big := func(i int) string {
				var b strings.Builder
				for j := range 2000 {
					fmt.Fprintf(&b, "line %d of a large file\n", j)
				}
				fmt.Fprintf(&b, "edit %d\n", i)
				return b.String()
			}
			// Several commits per fetch: their blobs delta against each other.
			for round := range 2 {
				var tip string
				for i := range 4 {
					n := round*4 + i
					tip = gittest.PushFiles(t, bare, "main", map[string]string{"big.txt": big(n), fmt.Sprintf("f%d.txt", n): big(n)}, "edit")
				}
				got, err := d.Fetch(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if got.String() != tip {
					t.Fatalf("Fetch = %s, want %s", got, tip)
				}
				for n := range round*4 + 4 {
					text, err := d.s.readFile(got, fmt.Sprintf("f%d.txt", n))
					if err != nil || string(text) != big(n) {
						t.Fatalf("f%d.txt at the tip: %d bytes, %v", n, len(text), err)
					}
				}
				// Every commit of the history was fetched, not only the tip.
				c, err := d.CommitObject(got)
				if err != nil {
					t.Fatal(err)
				}
				for p := c; ; {
					if p, err = p.Parents().Next(); err == io.EOF {
						break
					} else if err != nil {
						t.Fatalf("history of the fetched tip: %v", err)
					}
					c = p
				}
			}
		})
	}
}

// TestFetchOfAnIncompletePackFails: an upload-pack answer whose pack lacks
// the wanted commit (here the server is asked for its parent instead) is a
// transient fetch error, and leaves neither the cache's ref nor the
// accepted tip at the commit it lacks.
func TestFetchOfAnIncompletePackFails(t *testing.T) {
	ctx := testContext(t)
	bare := gittest.NewBare(t, fleetFiles())
	var from, to atomic.Value // hex ids: a want of from is sent as to
	from.Store("")
	to.Store("")
	url := gittest.ServeWrapped(t, bare, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if f := from.Load().(string); f != "" && strings.HasSuffix(req.URL.Path, "/git-upload-pack") {
				body, _ := io.ReadAll(req.Body)
				body = bytes.ReplaceAll(body, []byte("want "+f), []byte("want "+to.Load().(string)))
				req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			}
			h.ServeHTTP(w, req)
		})
	})
	d := openDesired(t, url)
	old, err := d.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parent := gittest.PushFiles(t, bare, "main", map[string]string{"notes.txt": "one\n"}, "one")
	tip := gittest.PushFiles(t, bare, "main", map[string]string{"notes.txt": "two\n"}, "two")
	from.Store(tip)
	to.Store(parent)
	got, err := d.Fetch(ctx)
	if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Fetch of a pack without the tip = %s, %v; want a transient error naming the missing object", got, err)
	}
	if got != old || d.Accepted() != old {
		t.Fatalf("after the failed fetch: Fetch = %s, accepted %s; want %s", got, d.Accepted(), old)
	}
	if r, err := d.s.repo.Storer.Reference(d.ref); err == nil && r.Hash().String() == tip {
		t.Fatalf("cache's %s set to the commit the pack lacked", d.ref)
	}
	from.Store("")
	if got, err := d.Fetch(ctx); err != nil || got.String() != tip {
		t.Fatalf("Fetch once the server answers whole = %s, %v; want %s", got, err, tip)
	}
}

// appendEvent appends one started event of rollout to app's record.
func appendEvent(t *testing.T, sh *Shared, app, rollout string) {
	t.Helper()
	ev := reconciler.Event{Type: reconciler.EventStarted, Rollout: rollout, Target: "1.1.0", Waves: [][]string{{"a"}}}
	if err := sh.Append(testContext(t), app, func([]reconciler.Event) (*reconciler.Event, error) { return &ev, nil }); err != nil {
		t.Fatal(err)
	}
}
