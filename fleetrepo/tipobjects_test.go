package fleetrepo

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// TestImportedObjectsSpareTheFetch: an agent at the old tip that imports
// the objects another agent packed for the new one reads the branch with
// the ref listing alone, and gets the new tip whole; a pack that does not
// make the tip whole, or is not a pack, imports nothing, and the fetch
// then asks the server as before.
func TestImportedObjectsSpareTheFetch(t *testing.T) {
	ctx := testContext(t)
	bare := gittest.NewBare(t, fleetFiles())
	url, reqs := gittest.ServeCounted(t, bare)
	publisher, reader, late := openDesired(t, url), openDesired(t, url), openDesired(t, url)
	base, err := publisher.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Desired{reader, late} {
		if _, err := d.Fetch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	gittest.PushFiles(t, bare, "main", map[string]string{"notes.txt": "one\n"}, "one")
	want := gittest.PushFiles(t, bare, "main", map[string]string{"notes.txt": "two\n", "dir/more.txt": "more\n"}, "two")
	tip, err := publisher.Fetch(ctx)
	if err != nil || tip.String() != want {
		t.Fatalf("publisher fetch = %s, %v; want %s", tip, err, want)
	}
	pack, err := publisher.Pack(base, tip, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publisher.Pack(base, tip, 64); !errors.Is(err, ErrPackTooLarge) {
		t.Errorf("Pack under a 64-byte bound: %v, want ErrPackTooLarge", err)
	}

	// Not whole: the objects of the first push only, offered for the tip.
	c, err := publisher.CommitObject(tip)
	if err != nil {
		t.Fatal(err)
	}
	partial, err := publisher.Pack(base, c.ParentHashes[0], 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Import(tip, partial); err == nil {
		t.Error("a pack without the tip imported")
	}
	// Not whole for a cache at base: the tip's own objects, not its parent's.
	top, err := publisher.Pack(c.ParentHashes[0], tip, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Import(tip, top); err == nil {
		t.Error("a pack without the tip's parent imported into a cache that lacks it")
	}
	if err := late.Import(tip, []byte("PACK garbage")); err == nil {
		t.Error("garbage imported")
	}
	if err := late.s.present(tip); err == nil {
		t.Fatal("a failed import left the tip in the cache")
	}
	before := reqs.Counts()
	if got, err := late.Fetch(ctx); err != nil || got != tip {
		t.Fatalf("fetch after failed imports = %s, %v", got, err)
	}
	if got := reqs.Counts().Sub(before); got.Fetches != 1 {
		t.Errorf("fetch after failed imports: %s, want one upload-pack", got)
	}

	if err := reader.Import(tip, pack); err != nil {
		t.Fatal(err)
	}
	before = reqs.Counts()
	got, err := reader.Fetch(ctx)
	if err != nil || got != tip {
		t.Fatalf("fetch after the import = %s, %v; want %s", got, err, tip)
	}
	if n := reqs.Counts().Sub(before); n.Total() != 1 || n.Adverts != 1 {
		t.Errorf("fetch after the import: %s, want the ref listing alone", n)
	}
	for file, text := range map[string]string{"notes.txt": "two\n", "dir/more.txt": "more\n"} {
		if b, err := reader.s.readFile(tip, file); err != nil || string(b) != text {
			t.Errorf("%s at the imported tip = %q, %v", file, b, err)
		}
	}
	if !reader.Descends(tip, base) || !reader.Descends(tip, c.ParentHashes[0]) {
		t.Error("the imported tip does not descend from the old one")
	}
}

// TestImportRefusesCostlyPacks: a published pack holding deltas (applying
// one costs what its copies say, not its size), or objects declared larger
// in all than the bound, is refused before anything is read into the cache.
func TestImportRefusesCostlyPacks(t *testing.T) {
	st := memory.NewStorage()
	var hashes []plumbing.Hash
	text := strings.Repeat("the same line, again and again\n", 400)
	for i := range 2 {
		o := st.NewEncodedObject()
		o.SetType(plumbing.BlobObject)
		w, err := o.Writer()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "%s%d\n", text, i)
		w.Close()
		h, err := st.SetEncodedObject(o)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	var deltas, whole bytes.Buffer
	if _, err := packfile.NewEncoder(&deltas, st, false).Encode(hashes, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := packfile.NewEncoder(&whole, st, false).Encode(hashes, 0); err != nil {
		t.Fatal(err)
	}
	if err := checkPack(deltas.Bytes(), maxImport); err == nil || !strings.Contains(err.Error(), "delta") {
		t.Errorf("a pack of deltas: %v, want it refused for its delta", err)
	}
	if err := checkPack(whole.Bytes(), maxImport); err != nil {
		t.Errorf("a pack of whole objects: %v", err)
	}
	if err := checkPack(whole.Bytes(), int64(len(text))); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a pack over the bound: %v, want it refused for its size", err)
	}
}
