package fleetrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/utils/ioutil"
)

// cas sets ref on the remote to next if and only if it is still old (zero:
// absent), and reports a lost race as *ConflictError. It speaks the push
// protocol itself: one command "old next ref" and a pack of exactly the
// objects writeCommit made. git-receive-pack checks the old value under the
// ref's lock, so of many concurrent writers exactly one wins (go-git's
// in-process server would not check: never point this at it). go-git's
// Remote.Push would be a CAS too (RequireRemoteRefs), but it walks the
// whole history of every remote ref to choose objects, so each write grows
// slower as lease and report chains grow. Losing is decided by re-reading
// the ref, never by parsing the error. Caller holds mu.
func (s *store) cas(ctx context.Context, ref plumbing.ReferenceName, old, next plumbing.Hash) error {
	objects := []plumbing.Hash{next}
	if s.pending.commit == next {
		objects = s.pending.objects
	}
	s.pending = pendingCommit{}
	pushErr := s.bounded(ctx, s.timeout, func(ctx context.Context) error {
		return s.push(ctx, []*packp.Command{{Name: ref, Old: old, New: next}}, objects, false)
	})
	if pushErr == nil {
		return s.setLocal(ref, next)
	}
	var conflict *ConflictError
	if errors.As(pushErr, &conflict) {
		return pushErr
	}
	op := "push " + ref.String() + " to"
	now, err := s.head(ctx, ref)
	if err == nil && now == old && errors.Is(pushErr, ErrRejected) {
		// A writer that won the race may still hold the ref's lock (git
		// waits 100ms for it): look again once it must have finished.
		now, err = s.headAfter(ctx, ref, lockSettle)
	}
	if err != nil {
		return classify(op, s.url, fmt.Errorf("%w (and re-reading it failed: %v)", pushErr, err))
	}
	switch {
	case now == next:
		return s.setLocal(ref, next) // it landed; the error came after
	case now == old && errors.Is(pushErr, ErrRejected):
		return fmt.Errorf("%s %s: %w", op, s.url, pushErr)
	case now == old:
		return classify(op, s.url, pushErr)
	}
	s.log.Debug("compare-and-swap lost", "ref", ref, "expected", old, "actual", now, "push", pushErr)
	return &ConflictError{Repo: s.url, Ref: ref, Expected: old, Actual: now}
}

// lockSettle is how long a refused push waits before its second look at
// the ref: longer than git's 100ms wait for a ref lock (core.filesRefLockTimeout).
const lockSettle = 250 * time.Millisecond

// headAfter reads the ref again after d of real time: it waits for another
// process (git holding a ref lock), which no injected clock can hurry, so
// it is the one wait in fleetrepo that stays on the system clock; it decides
// nothing (the re-read ref does).
func (s *store) headAfter(ctx context.Context, ref plumbing.ReferenceName, d time.Duration) (plumbing.Hash, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return plumbing.ZeroHash, ctx.Err()
	case <-t.C:
	}
	return s.head(ctx, ref)
}

// push sends ref updates with a pack of objects; atomic asks the server
// to apply all of them in one ref transaction or none (the push protocol's
// "atomic" capability; a server that does not offer it gets nothing and the
// error says so). When the first command's ref is already at its New value
// it returns nil (the write landed: an identical commit). When the
// advertised value of a ref already differs from its Old it returns
// *ConflictError on that ref without sending anything.
func (s *store) push(ctx context.Context, cmds []*packp.Command, objects []plumbing.Hash, atomic bool) (err error) {
	cl, ep, err := s.gitTransport()
	if err != nil {
		return err
	}
	sess, err := cl.NewReceivePackSession(ep, s.auth)
	if err != nil {
		return err
	}
	defer ioutil.CheckClose(sess, &err)
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return err
	}
	if advertised(ar, cmds[0].Name) == cmds[0].New {
		return nil // an identical commit is already there (same content, same second)
	}
	for _, cmd := range cmds {
		if adv := advertised(ar, cmd.Name); adv != cmd.Old {
			return &ConflictError{Repo: s.url, Ref: cmd.Name, Expected: cmd.Old, Actual: adv}
		}
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(capabilities(ar))
	if atomic {
		if !capabilities(ar).Supports(capability.Atomic) {
			return &personError{msg: "push to " + s.url, err: ErrNoAtomicPush}
		}
		if err := req.Capabilities.Set(capability.Atomic); err != nil {
			return err
		}
	}
	req.Commands = cmds
	var pack bytes.Buffer
	if _, err := packfile.NewEncoder(&pack, s.repo.Storer, false).Encode(objects, 10); err != nil {
		return fmt.Errorf("pack %d objects: %w", len(objects), err)
	}
	req.Packfile = io.NopCloser(&pack)
	rs, err := sess.ReceivePack(ctx, req)
	if rs != nil {
		if rerr := rs.Error(); rerr != nil { // the server answered, and said no
			return fmt.Errorf("%w: %w", ErrRejected, rerr)
		}
	}
	return err
}

func advertised(ar *packp.AdvRefs, name plumbing.ReferenceName) plumbing.Hash {
	if ar == nil {
		return plumbing.ZeroHash
	}
	return ar.References[name.String()]
}

func capabilities(ar *packp.AdvRefs) *capability.List {
	if ar == nil {
		return capability.NewList()
	}
	return ar.Capabilities
}

// commitSpec describes a commit to build in the cache without a worktree.
type commitSpec struct {
	base    plumbing.Hash     // tree to start from (commit), zero = empty tree
	files   map[string][]byte // path → content; replaces or adds files
	parents []plumbing.Hash
	message string
	author  object.Signature
	signer  CommitSigner // nil: unsigned
}

// writeCommit stores blob, trees and commit in the cache. Caller holds mu.
func (s *store) writeCommit(c commitSpec) (plumbing.Hash, error) {
	s.written = nil
	var base *object.Tree
	if !c.base.IsZero() {
		commit, err := s.repo.CommitObject(c.base)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", short(c.base), err)
		}
		if base, err = commit.Tree(); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree of %s: %w", short(c.base), err)
		}
	}
	tree, err := s.writeTree(base, c.files)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	commit := &object.Commit{
		Author: c.author, Committer: c.author, Message: c.message,
		TreeHash: tree, ParentHashes: c.parents,
	}
	if c.signer != nil {
		if err := signCommit(commit, c.signer); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	h, err := s.store(commit)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	s.pending = pendingCommit{commit: h, objects: append(s.written, h)}
	s.written = nil
	return h, nil
}

// signCommit puts signer's signature of the commit in its gpgsig header.
func signCommit(c *object.Commit, signer CommitSigner) error {
	var o plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&o); err != nil {
		return fmt.Errorf("encode commit to sign: %w", err)
	}
	r, err := o.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	sig, err := signer.Sign(r)
	if err != nil {
		return fmt.Errorf("sign commit: %w", err)
	}
	c.PGPSignature = string(sig)
	return nil
}

// writeTree writes base with files replaced, recursing into directories.
func (s *store) writeTree(base *object.Tree, files map[string][]byte) (plumbing.Hash, error) {
	entries := map[string]object.TreeEntry{}
	if base != nil {
		for _, e := range base.Entries {
			entries[e.Name] = e
		}
	}
	sub := map[string]map[string][]byte{}
	for path, data := range files {
		dir, rest, nested := strings.Cut(path, "/")
		if nested {
			if sub[dir] == nil {
				sub[dir] = map[string][]byte{}
			}
			sub[dir][rest] = data
			continue
		}
		h, err := s.store(blob(data))
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries[path] = object.TreeEntry{Name: path, Mode: filemode.Regular, Hash: h}
	}
	for dir, files := range sub {
		var child *object.Tree
		if e, ok := entries[dir]; ok && e.Mode == filemode.Dir && base != nil {
			t, err := base.Tree(dir)
			if err != nil {
				return plumbing.ZeroHash, fmt.Errorf("read tree %s: %w", dir, err)
			}
			child = t
		}
		h, err := s.writeTree(child, files)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries[dir] = object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h}
	}
	return s.store(sortedTree(entries))
}

// sortedTree orders entries the way git does (directories compare as name + "/").
func sortedTree(entries map[string]object.TreeEntry) *object.Tree {
	t := &object.Tree{}
	for _, e := range entries {
		t.Entries = append(t.Entries, e)
	}
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(t.Entries, func(i, j int) bool { return key(t.Entries[i]) < key(t.Entries[j]) })
	return t
}

type blob []byte

type encoder interface {
	Encode(plumbing.EncodedObject) error
}

func (b blob) Encode(o plumbing.EncodedObject) error {
	o.SetType(plumbing.BlobObject)
	w, err := o.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func (s *store) store(obj encoder) (plumbing.Hash, error) {
	o := s.repo.Storer.NewEncodedObject()
	if err := obj.Encode(o); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode object: %w", err)
	}
	h, err := s.repo.Storer.SetEncodedObject(o)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store object in cache: %w", err)
	}
	s.written = append(s.written, h)
	return h, nil
}

// readFile returns one file of a commit's tree from the cache. Caller holds mu.
func (s *store) readFile(commit plumbing.Hash, path string) ([]byte, error) {
	c, err := s.repo.CommitObject(commit)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", short(commit), err)
	}
	f, err := c.File(path)
	if err != nil {
		return nil, fmt.Errorf("read %s in commit %s: %w", path, short(commit), err)
	}
	text, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("read %s in commit %s: %w", path, short(commit), err)
	}
	return []byte(text), nil
}
