package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/utils/ioutil"
)

// directFetch reports whether fetches of known hashes from this store's
// repository go straight to upload-pack (uploadPack): smart HTTP, whose
// requests are stateless, so git http-backend answers a POST
// git-upload-pack without the ref advertisement go-git's Remote.Fetch
// asks for first. Over ssh and local transports the server advertises its
// refs on every connection anyway: those keep Remote.Fetch.
func (s *store) directFetch() bool {
	ep, err := transport.NewEndpoint(s.url)
	return err == nil && (ep.Protocol == "http" || ep.Protocol == "https")
}

// gitTransport is go-git's transport client for this store's URL, with
// the URL's endpoint: what a session of either service (upload-pack,
// receive-pack) is opened on.
func (s *store) gitTransport() (transport.Transport, *transport.Endpoint, error) {
	ep, err := transport.NewEndpoint(s.url)
	if err != nil {
		return nil, nil, err
	}
	cl, err := client.NewClient(ep)
	return cl, ep, err
}

// uploadPack fetches the objects of wants (and everything they reach that
// the cache lacks) in one POST git-upload-pack: the wants, the tips of the
// cache's refs as haves (what go-git's fetch would send, less the history
// it walks below them: every tip is a commit the server had), "done", and
// the packfile of the answer, demultiplexed from side-band-64k, into the
// cache's storer. It asks for what any smart server supports (ofs-delta,
// side-band-64k, no-progress) and no thin pack, so every delta's base is
// in the pack. An answer that lacks a wanted object is an error (naming
// it missing). It sets no ref. Caller holds mu.
func (s *store) uploadPack(ctx context.Context, wants []plumbing.Hash) (err error) {
	cl, ep, err := s.gitTransport()
	if err != nil {
		return err
	}
	sess, err := cl.NewUploadPackSession(ep, s.auth)
	if err != nil {
		return err
	}
	defer ioutil.CheckClose(sess, &err)
	req := packp.NewUploadPackRequest()
	for _, c := range []capability.Capability{capability.OFSDelta, capability.Sideband64k, capability.NoProgress} {
		if err := req.Capabilities.Set(c); err != nil {
			return err
		}
	}
	if err := req.Capabilities.Set(capability.Agent, capability.DefaultAgent()); err != nil {
		return err
	}
	req.Wants = wants
	if req.Haves, err = s.haves(); err != nil {
		return err
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
			return fmt.Errorf("upload-pack answered no pack for %d wanted objects", len(wants))
		}
		return err
	}
	defer ioutil.CheckClose(resp, &err)
	if err := packfile.UpdateObjectStorage(s.repo.Storer, sideband.NewDemuxer(sideband.Sideband64k, resp)); err != nil {
		return fmt.Errorf("read the pack upload-pack sent: %w", err)
	}
	for _, h := range wants {
		if err := s.present(h); err != nil {
			return fmt.Errorf("the pack upload-pack sent is missing wanted object %s: %w", short(h), err)
		}
	}
	return nil
}

// haves lists the commits the cache's refs point at, sorted.
func (s *store) haves() ([]plumbing.Hash, error) {
	refs, err := s.repo.Storer.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("list the cache's refs: %w", err)
	}
	seen := map[plumbing.Hash]bool{}
	err = refs.ForEach(func(r *plumbing.Reference) error {
		if r.Type() != plumbing.HashReference || seen[r.Hash()] {
			return nil
		}
		if _, err := s.repo.Storer.EncodedObject(plumbing.CommitObject, r.Hash()); err == nil {
			seen[r.Hash()] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the cache's refs: %w", err)
	}
	out := make([]plumbing.Hash, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// present checks that the cache holds h and, when h is a commit, its tree.
func (s *store) present(h plumbing.Hash) error {
	o, err := s.repo.Storer.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return err
	}
	if o.Type() != plumbing.CommitObject {
		return nil
	}
	c, err := object.DecodeCommit(s.repo.Storer, o)
	if err != nil {
		return err
	}
	if _, err := s.repo.Storer.EncodedObject(plumbing.TreeObject, c.TreeHash); err != nil {
		return fmt.Errorf("tree %s of commit %s: %w", short(c.TreeHash), short(h), err)
	}
	return nil
}
