package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// repoFlags are the flags every operator command shares.
type repoFlags struct {
	repo, branch, dir, output string
	sharedFlags
}

func (f *repoFlags) register(c *cobra.Command, outputs ...string) {
	fl := c.Flags()
	fl.StringVar(&f.repo, "repo", "", "fleet repo URL: a path, file://, http(s)://, ssh:// (default: the current directory's repo, or its origin)")
	f.sharedFlags.register(fl)
	fl.StringVar(&f.branch, "tracked-branch", "main", "the branch agents track")
	fl.StringVar(&f.dir, "dir", "", "directory of the specs in the fleet repo (default: its root)")
	registerOutput(c, &f.output, outputs...)
}

func (f *repoFlags) checkOutput(allowed ...string) error { return checkOutput(f.output, allowed...) }

// openReader checks --output and opens the fleet for a command that only
// reads it.
func (f *repoFlags) openReader(ctx context.Context, e *env) (*fleetHandles, error) {
	if err := f.checkOutput(); err != nil {
		return nil, err
	}
	return openFleet(ctx, e, f, "reconciler-cli")
}

// runReader runs a command that reads the fleet: open it, compute the
// result, print it as JSON or, for people, with text.
func runReader[T any](c *cobra.Command, e *env, f *repoFlags, compute func(context.Context, *fleetHandles) (T, error), text func(T) error) error {
	h, err := f.openReader(c.Context(), e)
	if err != nil {
		return err
	}
	v, err := compute(c.Context(), h)
	if err != nil {
		return err
	}
	if f.output == "json" {
		return writeJSON(e, v)
	}
	return text(v)
}

// fleetHandles are the open fleet repo: its tracked branch and shared state.
type fleetHandles struct {
	desired *fleetrepo.Desired
	shared  sharedState
	url     string
	flags   *repoFlags
	// specs, when set, keeps the specs loaded at each commit (a commit's
	// specs never change): the long-running ui reads them every second.
	specs map[plumbing.Hash]loaded
}

// loaded is one commit's specs, or why they do not load.
type loaded struct {
	fleet *spec.Fleet
	err   error
}

// maxCachedSpecs bounds fleetHandles.specs.
const maxCachedSpecs = 1000

// openFleet opens the fleet repo named by the flags (in-memory caches: the
// operator commands are one-shot).
func openFleet(ctx context.Context, e *env, f *repoFlags, who string) (*fleetHandles, error) {
	return openFleetSigned(ctx, e, f, who, nil)
}

// openFleetSigned is openFleet with commits to the tracked branch signed by
// signer (nil: unsigned).
func openFleetSigned(ctx context.Context, e *env, f *repoFlags, who string, signer fleetrepo.CommitSigner) (*fleetHandles, error) {
	url, err := resolveRepo(e, f.repo)
	if err != nil {
		return nil, err
	}
	auth, err := fleetrepo.AuthFromEnv(url, e.getenv)
	if err != nil {
		return nil, err
	}
	id := fleetrepo.Identity{Name: who}
	desired, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: url, Branch: f.branch, Auth: auth, Identity: id, Signer: signer})
	if err != nil {
		return nil, err
	}
	shared, err := f.openShared(ctx, e, url, auth, who, "", nil)
	if err != nil {
		return nil, err
	}
	return &fleetHandles{desired: desired, shared: shared, url: url, flags: f}, nil
}

// resolveRepo turns --repo (or its absence) into a URL: the flag as given,
// else the current directory's repository: its origin when it has one (a
// person's clone), else the repository itself.
func resolveRepo(e *env, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if e.wd == "" {
		return "", &usageError{errors.New("no --repo and no working directory: name the fleet repo with --repo URL")}
	}
	repo, err := git.PlainOpenWithOptions(e.wd, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", &usageError{fmt.Errorf("no --repo and %s is not in a Git repository: name the fleet repo with --repo URL", e.wd)}
	}
	if rem, err := repo.Remote("origin"); err == nil && len(rem.Config().URLs) > 0 {
		u := rem.Config().URLs[0]
		if !strings.Contains(u, "://") && !strings.Contains(u, "@") && !filepath.IsAbs(u) {
			u = filepath.Join(e.wd, u)
		}
		return u, nil
	}
	wt, err := repo.Worktree()
	if err != nil { // a bare repository
		return e.wd, nil
	}
	return wt.Filesystem.Root(), nil
}

// tip fetches the tracked branch and loads its specs: what a command that
// writes on top of the tip needs (an invalid tip is an error).
func (h *fleetHandles) tip(ctx context.Context) (plumbing.Hash, *spec.Fleet, error) {
	commit, err := h.desired.Fetch(ctx)
	if err != nil {
		return commit, nil, fmt.Errorf("fetch %s of %s: %w", h.flags.branch, h.url, err)
	}
	fleet, err := h.load(commit)
	return commit, fleet, err
}

// maxInvalidWalk bounds the commits walked back from an invalid tip.
const maxInvalidWalk = 200

// fleetView is the fleet as the read commands show it: the tip's specs or,
// when the tip does not validate, the last valid commit's (what every agent
// still runs), with a warning naming the invalid tip and its error.
type fleetView struct {
	tip     plumbing.Hash // the tip of the tracked branch
	commit  plumbing.Hash // where the specs come from: tip, or the last valid commit
	fleet   *spec.Fleet
	warning string // "" when the tip validates
}

// view fetches the tracked branch and loads the last valid specs on it.
func (h *fleetHandles) view(ctx context.Context) (*fleetView, error) {
	tip, err := h.desired.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch %s of %s: %w", h.flags.branch, h.url, err)
	}
	fleet, err := h.load(tip)
	var serr *spec.Errors
	if !errors.As(err, &serr) {
		return &fleetView{tip: tip, commit: tip, fleet: fleet}, err
	}
	c, err := h.desired.CommitObject(tip)
	for n := 0; err == nil && n < maxInvalidWalk && c.NumParents() > 0; n++ {
		if c, err = c.Parent(0); err != nil {
			break
		}
		if f, lerr := h.load(c.Hash); lerr == nil {
			return &fleetView{tip: tip, commit: c.Hash, fleet: f, warning: fmt.Sprintf(
				"the tip %.12s of %s does not validate (%s): agents keep running what they run; showing %.12s, the last valid commit",
				tip.String(), h.flags.branch, specErrorSummary(serr), c.Hash.String())}, nil
		}
	}
	return nil, fmt.Errorf("the tip %.12s of %s does not validate (%s) and no earlier commit does: fix the specs (reconciler validate)",
		tip.String(), h.flags.branch, specErrorSummary(serr))
}

// warn prints the view's warning on stderr, once.
func (v *fleetView) warn(e *env) {
	if v.warning != "" {
		fmt.Fprintf(e.stderr, "warning: %s\n", v.warning)
	}
}

// specErrorSummary is the first problem of a spec, and how many more.
func specErrorSummary(err *spec.Errors) string {
	if len(err.List) == 0 {
		return err.Error()
	}
	s := err.List[0].Error()
	if n := len(err.List) - 1; n > 0 {
		s += fmt.Sprintf(" and %d more", n)
	}
	return s
}

// load reads the specs of a fetched commit.
func (h *fleetHandles) load(commit plumbing.Hash) (*spec.Fleet, error) {
	if l, ok := h.specs[commit]; ok {
		return l.fleet, l.err
	}
	fleet, err := h.loadNow(commit)
	var serr *spec.Errors
	if h.specs != nil && (err == nil || errors.As(err, &serr)) { // not a transient read error
		if len(h.specs) >= maxCachedSpecs {
			clear(h.specs)
		}
		h.specs[commit] = loaded{fleet, err}
	}
	return fleet, err
}

func (h *fleetHandles) loadNow(commit plumbing.Hash) (*spec.Fleet, error) {
	var fleet *spec.Fleet
	err := h.desired.View(func(r *git.Repository) error {
		var err error
		fleet, err = spec.LoadCommit(r, commit, h.flags.dir)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("specs at %s: %w", commit.String()[:12], err)
	}
	return fleet, nil
}

// app returns one app of a fleet, or an error listing the apps there are.
// errNoApp is the one failure of every command given an app the fleet does
// not have: `no app "nope" in the fleet (apps: api, web)`, exit 1.
var errNoApp = errors.New("no app")

func appOf(fleet *spec.Fleet, name string) (spec.App, error) {
	a, ok := fleet.Apps[name]
	if !ok {
		names := slices.Sorted(maps.Keys(fleet.Apps))
		return a, fmt.Errorf("%w %q in the fleet (apps: %s)", errNoApp, name, strings.Join(names, ", "))
	}
	if a.Name == "" {
		a.Name = name
	}
	return a, nil
}

// warnBadRefs says on stderr which shared refs the reads skipped as
// unreadable (a garbage report, lease or record event), and what to do.
func warnBadRefs(e *env, h *fleetHandles) {
	for _, msg := range badRefWarnings(h) {
		fmt.Fprintf(e.stderr, "warning: %s\n", msg)
	}
}

func badRefWarnings(h *fleetHandles) []string {
	var out []string
	for _, b := range h.shared.BadRefs() {
		out = append(out, fmt.Sprintf("skipped unreadable shared ref %s at %.12s: %s (rewrite or delete it; `leases break` overwrites a lease)", b.Ref, b.Commit, b.Err))
	}
	return out
}

// shared state reads, each naming what failed.
func (h *fleetHandles) reports(ctx context.Context) (map[string]reconciler.NodeReport, error) {
	r, err := h.shared.Reports(ctx)
	if err != nil {
		return nil, fmt.Errorf("read node reports from %s: %w", h.shared.URL(), err)
	}
	return r, nil
}
