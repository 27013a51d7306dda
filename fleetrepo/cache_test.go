package fleetrepo

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// TestCacheSurvivesTornRef: an agent killed while go-git rewrote a ref in
// its cache leaves an empty ref file; the next open repairs it and reads
// the shared state again instead of failing forever.
func TestCacheSurvivesTornRef(t *testing.T) {
	ctx := testContext(t)
	bare := gittest.NewBare(t, nil)
	cache := t.TempDir()
	open := func() *Shared {
		sh, err := OpenShared(ctx, SharedOptions{URL: bare, CacheDir: cache, Identity: Identity{Name: "n1"}})
		if err != nil {
			t.Fatal(err)
		}
		return sh
	}
	sh := open()
	if err := sh.WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Acquire(ctx, "web", 0, "n1", "r1", time.Minute); err != nil {
		t.Fatal(err)
	}
	var torn []string
	filepath.WalkDir(filepath.Join(cache, "refs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			torn = append(torn, p)
		}
		return err
	})
	if len(torn) == 0 {
		t.Fatal("no ref in the cache to tear")
	}
	for _, p := range torn {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Another node writes: reading it needs a fetch, which reads every
	// local ref first.
	if err := openShared(t, bare, "n2", nil).WriteReport(ctx, testReport("n2", "1.1.0")); err != nil {
		t.Fatal(err)
	}
	reports, err := open().Reports(ctx)
	if err != nil {
		t.Fatalf("after a torn ref: %v", err)
	}
	if reports["n1"].Apps["web"].Version != "1.0.0" || reports["n2"].Apps["web"].Version != "1.1.0" {
		t.Fatalf("reports = %+v", reports)
	}
}
