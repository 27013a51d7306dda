package fleetrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/go-git/go-git/v5/plumbing"
)

// Trailers are the machine-readable lines at the end of the commits
// reconciler writes to the tracked branch.
type Trailers struct {
	App        string // Reconciler-App
	From       string // Reconciler-From: the version before
	To         string // Reconciler-To: the version after
	Reason     string // Reconciler-Reason
	Node       string // Reconciler-Node: the node that wrote it, if one did
	RollbackOf string // Reconciler-Rollback-Of: the commit a rollback undoes
	// Rollout is Reconciler-Rollout: "waves" on a rollback that keeps the
	// waves and leases (reconciler rollback --waves) instead of applying at
	// once.
	Rollout string
	// Promote is Reconciler-Promote: the rollout (its commit id) an
	// approval commit approves, and Wave is Reconciler-Wave: up to which
	// wave, counted from 1 (reconciler promote; docs/rollouts.md).
	Promote string
	Wave    string
}

// RolloutWaves is the Reconciler-Rollout value of a rollback that rolls in
// waves like an upgrade.
const RolloutWaves = "waves"

type trailerField struct {
	key   string
	value *string
}

func (t *Trailers) fields() []trailerField {
	return []trailerField{{"Reconciler-App", &t.App}, {"Reconciler-From", &t.From}, {"Reconciler-To", &t.To},
		{"Reconciler-Reason", &t.Reason}, {"Reconciler-Node", &t.Node}, {"Reconciler-Rollback-Of", &t.RollbackOf},
		{"Reconciler-Rollout", &t.Rollout}, {"Reconciler-Promote", &t.Promote}, {"Reconciler-Wave", &t.Wave}}
}

// String is the trailer block, one "Key: value" line per set field.
func (t Trailers) String() string {
	var b strings.Builder
	for _, f := range t.fields() {
		if *f.value != "" {
			fmt.Fprintf(&b, "%s: %s\n", f.key, oneLine(*f.value))
		}
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ParseTrailers reads the Reconciler-* trailers of a commit message: the
// lines of its last paragraph, as git interpret-trailers reads them. A
// subject alone has no trailers, and a trailer quoted in the body (a person's
// "Reconciler-Rollback-Of: ..." in an explanation) is not one.
func ParseTrailers(message string) Trailers {
	var t Trailers
	fields := t.fields()
	lines := strings.Split(strings.TrimRightFunc(message, unicode.IsSpace), "\n")
	start := len(lines)
	for start > 0 && strings.TrimSpace(lines[start-1]) != "" {
		start--
	}
	if start == 0 {
		return t // one paragraph: the subject
	}
	for _, line := range lines[start:] {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if strings.EqualFold(strings.TrimSpace(key), f.key) {
				*f.value = strings.TrimSpace(value)
			}
		}
	}
	return t
}

// CommitRequest is a commit to the tracked branch.
type CommitRequest struct {
	// Expect is the tip the commit is made on, and the value the branch
	// must still have: the push is a compare-and-swap. Zero means the last
	// accepted tip (see Fetch).
	Expect plumbing.Hash
	// Files replaces (or adds) whole files, by path from the repository root.
	Files map[string][]byte
	// Message is the subject, optionally a blank line and a body.
	Message  string
	Trailers Trailers
	// Author of the commit (also its committer); default the handle's Identity.
	Author Identity
	// Branch, when set, receives the commit instead of the tracked branch:
	// a new branch (it must not exist yet) for a pull request.
	Branch string
}

// Commit writes req on top of req.Expect and moves the tracked branch to it
// if the branch is still at req.Expect. A lost race is a *ConflictError
// (errors.Is ErrConflict): Fetch, look again, decide again. On success the
// new commit becomes the accepted tip.
func (d *Desired) Commit(ctx context.Context, req CommitRequest) (plumbing.Hash, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	expect := req.Expect
	if expect.IsZero() {
		expect = d.acceptedLocked()
	}
	if expect.IsZero() {
		return plumbing.ZeroHash, fmt.Errorf("commit to %s: nothing fetched yet: %w", d.ref, ErrNoCommit)
	}
	if _, err := d.s.repo.CommitObject(expect); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit to %s on %s: not in the cache (Fetch first): %w", d.ref, short(expect), err)
	}
	author := req.Author
	if author.Name == "" {
		author = d.opts.Identity
	}
	next, err := d.s.writeCommit(commitSpec{
		base: expect, files: req.Files, parents: []plumbing.Hash{expect},
		message: commitMessage(req.Message, req.Trailers),
		author:  author.signature(d.opts.Clock.Now()),
		signer:  d.opts.Signer,
	})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit to %s: %w", d.ref, err)
	}
	if err := d.publish(ctx, req.Branch, expect, next); err != nil {
		return plumbing.ZeroHash, err
	}
	return next, nil
}

// publish moves the tracked branch from expect to next by compare-and-swap
// and accepts next; or, with branch set, creates that branch at next.
// Caller holds mu.
func (d *Desired) publish(ctx context.Context, branch string, expect, next plumbing.Hash) error {
	if branch != "" {
		ref := plumbing.NewBranchReferenceName(branch)
		err := d.s.cas(ctx, ref, plumbing.ZeroHash, next)
		var ce *ConflictError
		if errors.As(err, &ce) && !ce.Actual.IsZero() {
			// Not a race to retry: the branch is there already. The error
			// still matches ErrConflict (the compare-and-swap lost).
			return fmt.Errorf("commit to new branch %s: %w (at %s): name a new branch, or commit to the tracked branch instead%w", ref, ErrBranchExists, short(ce.Actual), quiet{ce})
		}
		if err != nil {
			return fmt.Errorf("commit to new branch %s: %w", ref, err)
		}
		return nil
	}
	if err := d.s.cas(ctx, d.ref, expect, next); err != nil {
		return fmt.Errorf("commit to %s: %w", d.ref, err)
	}
	old := d.acceptedLocked()
	if (old.IsZero() || old == expect) && d.opts.Verifier == nil {
		return d.s.setLocal(d.accepted, next)
	}
	// With a Verifier this handle's own commits pass the policy like any
	// other's: an agent whose commit its peers would refuse stays with them.
	if err := d.acceptLocked(old, next); err != nil {
		d.s.log.Warn("committed, but not accepting the commit", "commit", next, "err", err)
	}
	return nil
}

func commitMessage(msg string, t Trailers) string {
	msg = strings.TrimRight(msg, "\n") + "\n"
	if tr := t.String(); tr != "" {
		msg += "\n" + tr
	}
	return msg
}

// AppChange is an edit of one app's fields on the tracked branch.
type AppChange struct {
	Expect plumbing.Hash  // tip to edit; zero: the last accepted
	App    string         // the app
	Set    map[string]any // dotted field path → value, as SetField takes
	// Message subject; default "<app>: set <fields>".
	Message  string
	Trailers Trailers // App is filled in
	Author   Identity
	Branch   string // see CommitRequest.Branch
}

// EditApp changes fields of one app in the file that declares it
// (FindAppFile), byte-splicing only the values (SetField), and commits by
// compare-and-swap (see Commit).
func (d *Desired) EditApp(ctx context.Context, c AppChange) (plumbing.Hash, error) {
	if c.Expect.IsZero() {
		c.Expect = d.Accepted()
	}
	path, src, err := d.appFile(c.Expect, c.App)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var keys []string
	for field, value := range c.Set {
		if src, err = SetField(src, c.App, field, value); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("edit %s in %s: %w", c.App, path, err)
		}
		keys = append(keys, field)
	}
	if c.Message == "" {
		c.Message = fmt.Sprintf("%s: set %s", c.App, strings.Join(keys, ", "))
	}
	c.Trailers.App = c.App
	return d.Commit(ctx, CommitRequest{Expect: c.Expect, Files: map[string][]byte{path: src},
		Message: c.Message, Trailers: c.Trailers, Author: c.Author, Branch: c.Branch})
}

// appFile finds and reads the file declaring app in commit.
func (d *Desired) appFile(commit plumbing.Hash, app string) (string, []byte, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	c, err := d.s.repo.CommitObject(commit)
	if err != nil {
		return "", nil, fmt.Errorf("read commit %s of %s (Fetch first): %w", short(commit), d.ref, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return "", nil, fmt.Errorf("read tree of %s: %w", short(commit), err)
	}
	path, err := FindAppFile(tree, app)
	if err != nil {
		return "", nil, fmt.Errorf("in commit %s: %w", short(commit), err)
	}
	src, err := d.s.readFile(commit, path)
	return path, src, err
}

// AppVersion returns the app's version as written in commit ("" when it is
// not a plain string literal).
func (d *Desired) AppVersion(commit plumbing.Hash, app string) (string, error) {
	_, src, err := d.appFile(commit, app)
	if err != nil {
		return "", err
	}
	leaves, err := appLeaves(src, app)
	if err != nil {
		return "", err
	}
	return unquote(leaves["version"]), nil
}

func unquote(lit string) string {
	if len(lit) >= 2 && lit[0] == '"' && lit[len(lit)-1] == '"' && !strings.Contains(lit, `\(`) {
		return strings.ReplaceAll(lit[1:len(lit)-1], `\"`, `"`)
	}
	return ""
}

// SetVersion commits apps.<app>.version = version (an upgrade, or a
// downgrade by a person), with From/To trailers.
func (d *Desired) SetVersion(ctx context.Context, expect plumbing.Hash, app, version, reason string, author Identity) (plumbing.Hash, error) {
	if expect.IsZero() {
		expect = d.Accepted()
	}
	from, err := d.AppVersion(expect, app)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return d.EditApp(ctx, AppChange{Expect: expect, App: app, Set: map[string]any{"version": version},
		Message:  fmt.Sprintf("%s: upgrade from %s to %s", app, orNone(from), version),
		Trailers: Trailers{From: from, To: version, Reason: reason}, Author: author})
}

// SetPaused commits apps.<app>.paused = paused (pause or resume a rollout).
func (d *Desired) SetPaused(ctx context.Context, expect plumbing.Hash, app string, paused bool, reason string, author Identity) (plumbing.Hash, error) {
	verb := "resume"
	if paused {
		verb = "pause"
	}
	return d.EditApp(ctx, AppChange{Expect: expect, App: app, Set: map[string]any{"paused": paused},
		Message: fmt.Sprintf("%s: %s rollout", app, verb), Trailers: Trailers{Reason: reason}, Author: author})
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// quiet wraps an error for errors.Is and errors.As without adding to the
// message.
type quiet struct{ err error }

func (q quiet) Error() string { return "" }
func (q quiet) Unwrap() error { return q.err }
