package fleetrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/storage/memory"
)

// ErrPackTooLarge is Pack's answer when the objects would not fit in max.
var ErrPackTooLarge = errors.New("pack larger than the bound")

// Pack returns a packfile of the objects that lead from commit base to
// commit tip: reachable from tip, not from base (both in the cache). An
// agent that read a new tip publishes it beside the etcd tip key, so the
// agents that were at base need not each fetch it from the Git server (10,000
// fetches of one commit from one git http-backend took minutes,
// docs/scale.md). Over max bytes it returns ErrPackTooLarge.
func (d *Desired) Pack(base, tip plumbing.Hash, max int) ([]byte, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	hashes, err := revlist.Objects(d.s.repo.Storer, []plumbing.Hash{tip}, []plumbing.Hash{base})
	if err != nil {
		return nil, fmt.Errorf("list the objects from %s to %s: %w", short(base), short(tip), err)
	}
	w := &boundedBuffer{max: max}
	// Window 0: no deltas, which Import refuses (a delta's cost to apply
	// is not bounded by its size).
	if _, err := packfile.NewEncoder(w, d.s.repo.Storer, false).Encode(hashes, 0); err != nil {
		if errors.Is(err, ErrPackTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("pack the objects from %s to %s: %w", short(base), short(tip), err)
	}
	return w.Bytes(), nil
}

// boundedBuffer is a bytes.Buffer that refuses to grow past max.
type boundedBuffer struct {
	bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("%w (%d bytes)", ErrPackTooLarge, b.max)
	}
	return b.Buffer.Write(p)
}

// maxImport bounds what reading a published pack may inflate to.
const maxImport = 64 << 20

// checkPack refuses, before anything is stored, a pack that could cost
// more than max bytes to read: one holding deltas (Pack writes none), or
// objects declared larger than max in all. go-git bounds each object's
// inflation by its declared size, so a small pack cannot inflate to
// gigabytes past this check.
func checkPack(pack []byte, max int64) error {
	sc := packfile.NewScanner(bytes.NewReader(pack))
	_, n, err := sc.Header()
	if err != nil {
		return fmt.Errorf("not a packfile: %w", err)
	}
	var total int64
	for i := range n {
		h, err := sc.NextObjectHeader()
		if err != nil {
			return fmt.Errorf("object %d of %d: %w", i+1, n, err)
		}
		if h.Type == plumbing.OFSDeltaObject || h.Type == plumbing.REFDeltaObject {
			return fmt.Errorf("object %d of %d is a delta, which a published pack may not hold", i+1, n)
		}
		if total += h.Length; total > max {
			return fmt.Errorf("objects larger than %d bytes in all", max)
		}
		if _, _, err := sc.NextObject(io.Discard); err != nil {
			return fmt.Errorf("object %d of %d: %w", i+1, n, err)
		}
	}
	return nil
}

// Import adds the objects of pack (from Pack, published by another agent:
// untrusted) to the cache, provided they make commit tip whole: tip, its
// tree, every tree and blob under it and every parent commit are in the
// pack or in the cache already. Objects are named by the hash of their
// content, so a forged object is just another object, and an incomplete or
// unreadable pack imports nothing (an error). Import moves no ref: Fetch
// still reads the tip from the Git server and accepts it as from a fetch
// (descent, signers); finding tip here, it skips the fetch.
func (d *Desired) Import(tip plumbing.Hash, pack []byte) error {
	if err := checkPack(pack, maxImport); err != nil {
		return fmt.Errorf("the published objects of %s: %w", short(tip), err)
	}
	tmp := memory.NewStorage()
	if err := packfile.UpdateObjectStorage(tmp, bytes.NewReader(pack)); err != nil {
		return fmt.Errorf("read the published objects of %s: %w", short(tip), err)
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	cached := func(h plumbing.Hash) bool {
		_, err := d.s.repo.Storer.EncodedObject(plumbing.AnyObject, h)
		return err == nil
	}
	if cached(tip) {
		return nil
	}
	// Every object in the cache came whole from a fetch (or an Import):
	// the walk stops at the first one it has.
	seen := map[plumbing.Hash]bool{}
	todo := []plumbing.Hash{tip}
	for len(todo) > 0 {
		h := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[h] || cached(h) {
			continue
		}
		seen[h] = true
		o, err := tmp.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return fmt.Errorf("the published objects of %s lack %s: %w", short(tip), short(h), err)
		}
		switch o.Type() {
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(tmp, o)
			if err != nil {
				return fmt.Errorf("published commit %s: %w", short(h), err)
			}
			todo = append(todo, c.TreeHash)
			todo = append(todo, c.ParentHashes...)
		case plumbing.TreeObject:
			t, err := object.DecodeTree(tmp, o)
			if err != nil {
				return fmt.Errorf("published tree %s: %w", short(h), err)
			}
			for _, e := range t.Entries {
				if e.Mode != filemode.Submodule { // a submodule's commit is not in this repository
					todo = append(todo, e.Hash)
				}
			}
		case plumbing.TagObject:
			t, err := object.DecodeTag(tmp, o)
			if err != nil {
				return fmt.Errorf("published tag %s: %w", short(h), err)
			}
			todo = append(todo, t.Target)
		}
	}
	// Commits last, tip the very last: a write that fails half way leaves
	// no commit in the cache whose objects are not.
	var order, commits []plumbing.Hash
	for h := range seen {
		if o, err := tmp.EncodedObject(plumbing.CommitObject, h); err == nil && h != tip {
			commits = append(commits, o.Hash())
		} else if err != nil {
			order = append(order, h)
		}
	}
	for _, h := range append(append(order, commits...), tip) {
		o, err := tmp.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return fmt.Errorf("the published objects of %s: %w", short(tip), err)
		}
		if _, err := d.s.repo.Storer.SetEncodedObject(o); err != nil {
			return fmt.Errorf("store the published objects of %s: %w", short(tip), err)
		}
	}
	return nil
}
