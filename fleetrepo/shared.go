package fleetrepo

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/spec"
)

// Ref namespaces of the shared state. See docs/shared-state.md.
const (
	SharedPrefix  = "refs/reconciler/"
	NodesPrefix   = SharedPrefix + "nodes/"    // + <node>
	RolloutPrefix = SharedPrefix + "rollouts/" // + <app>
	LeasePrefix   = SharedPrefix + "leases/"   // + <app>/<slot>
)

// File names inside the shared-state commits; each commit's tree holds one.
const (
	reportFile = "report.json"
	eventFile  = "event.json"
	leaseFile  = "lease.json"
)

// Shared is the shared state under refs/reconciler/: node reports, rollout
// records and leases. It is safe for concurrent use; operations on one
// handle are serialized, so give independent actors their own handle.
type Shared struct {
	opts     SharedOptions
	s        *store
	instance string // names this handle's report commits (SharedOptions.Instance)

	// Guarded by s.mu.
	seen    map[plumbing.ReferenceName]observation // leases, by ref
	lost    map[plumbing.Hash]lostWrite            // lease writes whose answers were lost, by commit
	records map[string]recordCache                 // by app
	reports map[string]reportCache                 // last written, by node
	ignored map[plumbing.ReferenceName]bool        // invalid refs already warned about

	badMu sync.Mutex                        // guards bad only: BadRefs never waits for a fetch
	bad   map[plumbing.ReferenceName]BadRef // unreadable refs, skipped (badrefs.go)
}

// OpenShared opens the shared state at opts.URL, creating the cache when
// needed. It does not contact the repository.
func OpenShared(ctx context.Context, opts SharedOptions) (*Shared, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s, err := openStore(opts.URL, opts.CacheDir, opts.Auth, opts.Logger, opts.Timeout)
	if err != nil {
		return nil, fmt.Errorf("open shared state: %w", err)
	}
	return &Shared{
		opts:     opts,
		s:        s,
		instance: cmp.Or(opts.Instance, rand.Text()[:16]),
		seen:     map[plumbing.ReferenceName]observation{},
		lost:     map[plumbing.Hash]lostWrite{},
		records:  map[string]recordCache{},
		reports:  map[string]reportCache{},
		ignored:  map[plumbing.ReferenceName]bool{},
		bad:      map[plumbing.ReferenceName]BadRef{},
	}, nil
}

// URL returns the repository URL as dialled, credentials redacted (for messages).
func (sh *Shared) URL() string { return redact.String(sh.s.url) }

// Watch calls wake once when it starts and then whenever any ref under
// refs/reconciler/ moves, until ctx is done (then it returns nil). Local
// repositories are watched with fsnotify, remote ones polled every
// SharedOptions.PollInterval; see Desired.Watch.
func (sh *Shared) Watch(ctx context.Context, wake func()) error {
	match := func(n plumbing.ReferenceName) bool { return strings.HasPrefix(n.String(), SharedPrefix) }
	return sh.s.watch(ctx, match, sh.opts.PollInterval, wake)
}

// checkName refuses names that are not app or node names (spec.CheckName:
// the one name rule, which makes them one component of a ref).
func checkName(kind, name string) error { return spec.CheckName(kind, name) }

// validRef reports whether a shared-state ref names a valid node, app or
// lease slot. Others (refs/reconciler/nodes/a/b, pushed by hand or by an old
// version) are ignored, never planned. Caller holds mu.
func (sh *Shared) validRef(ref plumbing.ReferenceName) bool {
	name := ref.String()
	var err error
	switch {
	case strings.HasPrefix(name, NodesPrefix):
		err = checkName("node", strings.TrimPrefix(name, NodesPrefix))
	case strings.HasPrefix(name, RolloutPrefix):
		err = checkName("app", strings.TrimPrefix(name, RolloutPrefix))
	case strings.HasPrefix(name, LeasePrefix):
		if _, _, ok := parseLeaseRef(ref); !ok {
			err = errors.New("want " + LeasePrefix + "<app>/<slot>")
		}
	}
	if err == nil {
		return true
	}
	if !sh.ignored[ref] {
		sh.ignored[ref] = true
		sh.s.log.Warn("ignoring a shared-state ref that names no valid node, app or lease slot", "ref", name, "err", err)
	}
	return false
}

// readJSON decodes the one file of a shared-state commit. Caller holds mu.
func (sh *Shared) readJSON(commit plumbing.Hash, file string, v any) error {
	data, err := sh.s.readFile(commit, file)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s of commit %s: %w", file, short(commit), err)
	}
	return nil
}

// writeJSON builds a commit holding v as file, with parent (if not zero).
// Every node and operator reads shared state: credentials in any URL of v
// (an error naming an artifact URL) are redacted (internal/redact).
// Caller holds mu.
func (sh *Shared) writeJSON(file string, v any, parent plumbing.Hash, message string) (plumbing.Hash, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode %s: %w", file, err)
	}
	data = []byte(redact.String(string(data)))
	message = redact.String(message)
	var parents []plumbing.Hash
	if !parent.IsZero() {
		parents = []plumbing.Hash{parent}
	}
	return sh.s.writeCommit(commitSpec{
		files:   map[string][]byte{file: append(data, '\n')},
		parents: parents,
		message: message + "\n",
		author:  sh.opts.Identity.signature(sh.opts.Clock.Now()),
	})
}

// tip reads one ref's remote value (zero: absent; from ctx's Snapshot when
// it has one) and fetches it. Caller holds mu.
func (sh *Shared) tip(ctx context.Context, ref plumbing.ReferenceName) (plumbing.Hash, error) {
	refs, err := sh.listPrefix(ctx, ref.String())
	if err != nil {
		return plumbing.ZeroHash, err
	}
	h := refs[ref]
	if h.IsZero() {
		return h, nil
	}
	return h, sh.s.fetch(ctx, map[plumbing.ReferenceName]plumbing.Hash{ref: h})
}
