package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// remoteName is the name of the fleet repo's remote in every cache.
const remoteName = "origin"

// store is one local cache of one remote repository. Every operation that
// touches the cache holds mu: go-git storers are not safe for concurrent
// writers, and a fetch racing a read would see half-written state.
type store struct {
	url    string // what go-git dials (local paths made absolute)
	gitDir string // the repository's directory when it is on this machine
	auth   transport.AuthMethod
	log    *slog.Logger
	// timeout bounds one list or push (a fetch gets fetchTimeouts of it):
	// a server, or a proxy, that accepts and never answers would hold the
	// caller for ever otherwise.
	timeout time.Duration

	mu      sync.Mutex
	repo    *git.Repository
	remote  *git.Remote
	written []plumbing.Hash // objects stored since the last commit was built
	pending pendingCommit   // the last commit built, with the objects it added
}

// pendingCommit is a commit built in the cache and the new objects it needs
// on the remote: what cas sends. Every write builds, then pushes, under mu.
type pendingCommit struct {
	commit  plumbing.Hash
	objects []plumbing.Hash
}

// openStore opens (or creates) the cache at cacheDir ("" = in memory) for
// the repository at rawURL.
func openStore(rawURL, cacheDir string, auth transport.AuthMethod, log *slog.Logger, timeout time.Duration) (*store, error) {
	u, gitDir, err := normalizeURL(rawURL)
	if err != nil {
		return nil, err
	}
	repo, err := openCache(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("open cache %s for %s: %w", cacheDir, rawURL, err)
	}
	remote, err := setRemote(repo, u)
	if err != nil {
		return nil, fmt.Errorf("configure cache %s for %s: %w", cacheDir, rawURL, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &store{url: u, gitDir: gitDir, auth: auth, log: log, timeout: timeout, repo: repo, remote: remote}, nil
}

// DefaultTimeout bounds one exchange with a repository (a ref listing, a
// push) when the options give none; a fetch may take fetchTimeouts times it.
const DefaultTimeout = time.Minute

const fetchTimeouts = 5

// bounded runs op under a deadline of d, and names the deadline when it is
// what ended op (not the caller's ctx).
func (s *store) bounded(ctx context.Context, d time.Duration, op func(context.Context) error) error {
	tctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("no answer from the repository within %v", d))
	defer cancel()
	err := op(tctx)
	if err != nil && ctx.Err() == nil && tctx.Err() != nil {
		return fmt.Errorf("%w: %w", context.Cause(tctx), err)
	}
	return err
}

// normalizeURL returns the URL go-git should dial and, for a repository on
// this machine (a path or file://), its git directory.
func normalizeURL(raw string) (dial, gitDir string, err error) {
	if raw == "" {
		return "", "", errors.New("no repository URL")
	}
	p := raw
	if strings.HasPrefix(raw, "file://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("parse repository URL %s: %w", raw, err)
		}
		p = u.Path
	} else if strings.Contains(raw, "://") || isSCPLike(raw) {
		return raw, "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", "", fmt.Errorf("repository path %s: %w", raw, err)
	}
	gitDir = abs
	if fi, err := os.Stat(filepath.Join(abs, ".git")); err == nil && fi.IsDir() {
		gitDir = filepath.Join(abs, ".git")
	}
	return abs, gitDir, nil
}

// IsLocalURL reports whether a repository URL names a repository on this
// machine (a path or file://) rather than a server.
func IsLocalURL(raw string) bool {
	return strings.HasPrefix(raw, "file://") || !strings.Contains(raw, "://") && !isSCPLike(raw)
}

// isSCPLike reports user@host:path, which git treats as ssh.
func isSCPLike(s string) bool {
	at, colon := strings.Index(s, "@"), strings.Index(s, ":")
	return at > 0 && colon > at && !strings.Contains(s[:colon], "/")
}

func openCache(dir string) (*git.Repository, error) {
	if dir == "" {
		return git.Init(memory.NewStorage(), nil)
	}
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		return git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, err
	}
	if err := repairRefs(filepath.Join(dir, "refs")); err != nil {
		return nil, fmt.Errorf("repair cache %s: %w", dir, err)
	}
	return repo, nil
}

// repairRefs removes ref files that a killed process left empty or half
// written: go-git writes loose refs in place, and one SIGKILL at the wrong
// moment would otherwise break every later fetch ("ref file is empty"). The
// cache is only a cache: a removed ref is fetched again.
func repairRefs(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		line := strings.TrimSpace(string(b))
		if strings.HasPrefix(line, "ref: ") || plumbing.IsHash(line) {
			return nil
		}
		return os.Remove(path)
	})
}

func setRemote(repo *git.Repository, u string) (*git.Remote, error) {
	if r, err := repo.Remote(remoteName); err == nil {
		if urls := r.Config().URLs; len(urls) == 1 && urls[0] == u {
			return r, nil
		}
		if err := repo.DeleteRemote(remoteName); err != nil {
			return nil, err
		}
	}
	return repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{u}})
}

// list returns the remote's refs whose names start with prefix. Callers hold mu
// or accept that list does not touch the cache (it does not).
func (s *store) list(ctx context.Context, prefix string) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	var refs []*plumbing.Reference
	err := s.bounded(ctx, s.timeout, func(ctx context.Context) (err error) {
		refs, err = s.remote.ListContext(ctx, &git.ListOptions{Auth: s.auth})
		return err
	})
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return map[plumbing.ReferenceName]plumbing.Hash{}, nil
		}
		return nil, classify("list refs of", s.url, err)
	}
	out := make(map[plumbing.ReferenceName]plumbing.Hash)
	for _, r := range refs {
		if r.Type() == plumbing.HashReference && strings.HasPrefix(r.Name().String(), prefix) {
			out[r.Name()] = r.Hash()
		}
	}
	return out, nil
}

// head returns the remote value of one ref (zero when absent).
func (s *store) head(ctx context.Context, ref plumbing.ReferenceName) (plumbing.Hash, error) {
	refs, err := s.list(ctx, ref.String())
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return refs[ref], nil
}

// fetch copies the given refs (same names locally) and their objects into
// the cache, skipping refs whose objects the cache already has. Over smart
// HTTP it asks upload-pack for the hashes directly, one request
// (uploadPack); elsewhere go-git's Remote.Fetch lists the refs again
// first. Caller holds mu.
func (s *store) fetch(ctx context.Context, want map[plumbing.ReferenceName]plumbing.Hash) error {
	var specs []config.RefSpec
	fetched := map[plumbing.ReferenceName]plumbing.Hash{}
	for name, h := range want {
		if _, err := s.repo.Storer.EncodedObject(plumbing.AnyObject, h); err == nil {
			if err := s.setLocal(name, h); err != nil {
				return err
			}
			continue
		}
		specs = append(specs, config.RefSpec(fmt.Sprintf("+%s:%s", name, name)))
		fetched[name] = h
	}
	if len(specs) == 0 {
		return nil
	}
	if s.directFetch() {
		return s.fetchDirect(ctx, fetched, specs)
	}
	err := s.bounded(ctx, fetchTimeouts*s.timeout, func(ctx context.Context) error {
		return s.remote.FetchContext(ctx, &git.FetchOptions{
			RemoteName: remoteName, RefSpecs: specs, Auth: s.auth, Tags: git.NoTags, Force: true,
		})
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return classify("fetch "+specsString(specs)+" from", s.url, err)
	}
	// The remote may have moved between list and fetch: pin what was listed
	// when we have it, so the caller reads what it decided on.
	for name, h := range want {
		if _, err := s.repo.Storer.EncodedObject(plumbing.AnyObject, h); err == nil {
			if err := s.setLocal(name, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetchDirect is fetch over smart HTTP: one upload-pack request for the
// hashes of refs, whose names specs spell for errors; the refs are set
// only once every wanted object is in the cache.
func (s *store) fetchDirect(ctx context.Context, refs map[plumbing.ReferenceName]plumbing.Hash, specs []config.RefSpec) error {
	seen := map[plumbing.Hash]bool{}
	var wants []plumbing.Hash
	for _, h := range refs {
		if !seen[h] {
			seen[h] = true
			wants = append(wants, h)
		}
	}
	sort.Slice(wants, func(i, j int) bool { return wants[i].String() < wants[j].String() })
	err := s.bounded(ctx, fetchTimeouts*s.timeout, func(ctx context.Context) error {
		return s.uploadPack(ctx, wants)
	})
	if err != nil {
		return classify("fetch "+specsString(specs)+" from", s.url, err)
	}
	for name, h := range refs {
		if err := s.setLocal(name, h); err != nil {
			return err
		}
	}
	return nil
}

func specsString(specs []config.RefSpec) string {
	var names []string
	for _, s := range specs {
		names = append(names, s.Dst("").String())
	}
	if len(names) > 3 {
		return fmt.Sprintf("%s and %d more refs", strings.Join(names[:3], ", "), len(names)-3)
	}
	return strings.Join(names, ", ")
}

func (s *store) setLocal(name plumbing.ReferenceName, h plumbing.Hash) error {
	if err := s.repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
		return fmt.Errorf("cache %s: %w", name, err)
	}
	return nil
}
