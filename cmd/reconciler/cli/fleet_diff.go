package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
	"github.com/fleetops/reconciler/trust"
)

// diffOptions are the diff command's own flags.
type diffOptions struct {
	repoFlags
	verify       bool
	trustKeys    []string
	trustSigners []string       // who signed each commit (fleet_diff_signers.go)
	signers      *trust.Signers // loaded from trustSigners before anything is read
	exitCode     bool
	perNode      time.Duration
}

// diffReport is what diff shows.
type diffReport struct {
	Base    string                 `json:"base"`
	Head    string                 `json:"head"`
	Changes []reconciler.AppChange `json:"changes"`
	// Errors are the head's validation errors (file:line:col: message).
	Errors []string `json:"errors,omitempty"`
	// Signatures has one line per changed artifact checked with --verify.
	Signatures []signatureCheck `json:"signatures,omitempty"`
	// Commits of HEAD since its merge base with BASE, and who signed each
	// (when HEAD is a revision).
	Commits []commitSignature `json:"commits,omitempty"`
	// Approvals are the approval commits (reconciler promote) among
	// Commits: a pull request that approves a wave changes no app.
	Approvals []diffApproval `json:"approvals,omitempty"`
	// Holds are the nodes whose hold or pins the change moves.
	Holds []reconciler.HoldChange `json:"holds,omitempty"`
	// Notes say what could not be taken into account (shared state unreachable).
	Notes []string `json:"notes,omitempty"`
}

type signatureCheck struct {
	App     string `json:"app"`
	Version string `json:"version"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"` // the key that verified it, or why not
	// Swap is how the verified release switches versions (hot,
	// stop-then-start, hooks, in-place); "" when it could not be read.
	Swap string `json:"swap,omitempty"`
}

func newDiffCmd(e *env) *cobra.Command {
	o := &diffOptions{}
	c := &cobra.Command{
		Use:   "diff [BASE [HEAD]]",
		Short: "Preview a change: versions, targeted nodes, wave plan, validation",
		Long: `diff previews what a change to the fleet repo would do. BASE and HEAD are
revisions of the repository in the current directory (or --repo); BASE
defaults to the tracked branch (origin's when there is one) and HEAD to the
working tree. For each changed app it shows the version from -> to, the
targeted nodes, the wave plan over the current inventory (declared nodes and
the nodes that reported), the estimated duration, validation errors and
warnings (a version rolled back before, unknown nodes). --verify checks each
changed artifact's signature against --trust-key. Given two revisions it
lists the commits of HEAD since BASE and who signed each; with
--trust-signer it checks them with the agents' rules (docs/trust.md).
--output markdown renders a pull-request comment; --exit-code exits 1 when
there are changes.`,
		Example: `  reconciler diff                          # working tree vs the tracked branch
  reconciler diff main feature --output markdown
  reconciler diff HEAD~1 HEAD --verify --trust-key release.pub --exit-code`,
		Args: rangeArgs(0, 2),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.checkOutput("text", "json", "markdown"); err != nil {
				return err
			}
			if o.verify && len(o.trustKeys) == 0 {
				return &usageError{errors.New("--verify needs at least one --trust-key")}
			}
			if len(o.trustSigners) > 0 { // a bad file is an error, as for the agent and verify-commits
				var err error
				if o.signers, err = trust.LoadSigners(o.trustSigners...); err != nil {
					return fmt.Errorf("--trust-signer: %w", err)
				}
			}
			return runDiff(c.Context(), e, o, args)
		},
	}
	o.register(c, "text", "json", "markdown")
	fl := c.Flags()
	fl.BoolVar(&o.verify, "verify", false, "fetch each changed artifact and verify its signature")
	fl.StringArrayVar(&o.trustKeys, "trust-key", nil, "public key trusted to sign releases (repeatable; with --verify)")
	fl.StringArrayVar(&o.trustSigners, "trust-signer", nil, "file of trusted commit signers: check each commit with the agents' rules (repeatable)")
	fl.BoolVar(&o.exitCode, "exit-code", false, "exit 1 when there are changes")
	fl.DurationVar(&o.perNode, "node-estimate", 10*time.Second, "time one node takes to switch, for the estimate")
	return c
}

func runDiff(ctx context.Context, e *env, o *diffOptions, args []string) error {
	src, err := openDiffRepo(ctx, e, o)
	if err != nil {
		return err
	}
	rep := &diffReport{}
	base, err := src.fleetAt(args, 0, rep)
	if err != nil {
		return err
	}
	head, err := src.fleetAt(args, 1, rep)
	if err != nil {
		return err
	}
	if head == nil { // invalid head: show its errors, compare nothing
		printDiff(e, o.output, rep)
		return &exitError{code: exitFailure}
	}
	inv, failed := diffContext(ctx, e, o, head, rep)
	rep.Changes = reconciler.Diff(base, head, inv, reconciler.DiffOptions{NodeEstimate: o.perNode, FailedTargets: failed, Now: time.Now()})
	if rep.Changes == nil {
		rep.Changes = []reconciler.AppChange{}
	}
	rep.Holds = reconciler.DiffHolds(base, head)
	if o.verify {
		rep.Signatures = verifyChanges(ctx, o, head, rep.Changes)
		swapWarnings(rep)
	}
	if len(args) == 2 {
		if rep.Commits, err = commitSignatures(src.repo, o, args[0], args[1]); err != nil {
			rep.Notes = append(rep.Notes, "commit signatures: "+err.Error())
		}
		rep.Approvals = approvalsIn(src.repo, args[0], args[1])
	}
	printDiff(e, o.output, rep)
	for _, s := range rep.Signatures {
		if !s.OK {
			return &exitError{code: exitFailure}
		}
	}
	if o.exitCode && len(rep.Changes) > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

// diffRepo is where diff reads revisions: a local repository, with its
// working tree when it has one.
type diffRepo struct {
	repo   *git.Repository
	root   string // working tree, "" for a bare repository
	branch string
	dir    string
	// remote loads a branch of the fleet repo that this repository does
	// not have (one `upgrade --branch` pushed there); nil when none.
	remote func(branch string) (*spec.Fleet, string, error)
}

func openDiffRepo(ctx context.Context, e *env, o *diffOptions) (*diffRepo, error) {
	path := o.repo
	if path == "" {
		path = e.wd
	}
	path = strings.TrimPrefix(path, "file://")
	repo, err := git.PlainOpen(path) // a bare repository, or the top of a clone
	if err != nil {
		repo, err = git.PlainOpenWithOptions(path, &git.PlainOpenOptions{DetectDotGit: true})
	}
	if err != nil {
		return nil, &usageError{fmt.Errorf("diff reads a repository on this machine: %s: %w (clone the fleet repo, or name one with --repo PATH)", path, err)}
	}
	d := &diffRepo{repo: repo, branch: o.branch, dir: o.dir}
	if wt, err := repo.Worktree(); err == nil {
		d.root = wt.Filesystem.Root()
	}
	if url, err := resolveRepo(e, o.repo); err == nil {
		d.remote = func(branch string) (*spec.Fleet, string, error) { return remoteBranch(ctx, e, url, branch, o.dir) }
	}
	return d, nil
}

// remoteBranch fetches branch of the fleet repo at url into memory and
// loads its specs; it returns where it read them, for a note.
func remoteBranch(ctx context.Context, e *env, url, branch, dir string) (*spec.Fleet, string, error) {
	auth, err := fleetrepo.AuthFromEnv(url, e.getenv)
	if err != nil {
		return nil, "", err
	}
	d, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: url, Branch: branch, Auth: auth})
	if err != nil {
		return nil, "", err
	}
	tip, err := d.Fetch(ctx)
	if err != nil {
		return nil, "", err
	}
	var fleet *spec.Fleet
	err = d.View(func(r *git.Repository) error {
		fleet, err = spec.LoadCommit(r, tip, dir)
		return err
	})
	return fleet, fmt.Sprintf("%s is branch %s of %s at %.12s (not in this clone)", branch, branch, url, tip.String()), err
}

// fleetAt loads the fleet of args[i]: a revision; by default the tracked
// branch for BASE (i == 0) and the working tree for HEAD (i == 1). A HEAD
// that does not validate returns nil with its errors in rep.
func (d *diffRepo) fleetAt(args []string, i int, rep *diffReport) (*spec.Fleet, error) {
	var fleet *spec.Fleet
	var err error
	var name string
	switch {
	case i < len(args):
		name = args[i]
		fleet, err = d.atRevision(name, rep)
	case i == 0:
		name, fleet, err = d.trackedBranch(rep)
	case d.root != "":
		name = "working tree"
		fleet, err = spec.LoadDir(filepath.Join(d.root, d.dir))
	default:
		return nil, &usageError{errors.New("a bare repository has no working tree: name HEAD")}
	}
	if i == 0 {
		rep.Base = name
	} else {
		rep.Head = name
	}
	var serr *spec.Errors
	if errors.As(err, &serr) {
		if i == 0 { // an invalid base: everything in head counts as added
			rep.Notes = append(rep.Notes, fmt.Sprintf("base %s does not validate; comparing with nothing", name))
			return nil, nil
		}
		for _, x := range serr.List {
			rep.Errors = append(rep.Errors, x.Error())
		}
		return nil, nil
	}
	return fleet, err
}

func (d *diffRepo) trackedBranch(rep *diffReport) (string, *spec.Fleet, error) {
	for _, rev := range []string{"refs/remotes/origin/" + d.branch, "refs/heads/" + d.branch} {
		if _, err := d.repo.Reference(plumbing.ReferenceName(rev), true); err == nil {
			f, err := d.atRevision(rev, rep)
			return strings.TrimPrefix(strings.TrimPrefix(rev, "refs/remotes/"), "refs/heads/"), f, err
		}
	}
	return "", nil, fmt.Errorf("no branch %s (nor origin/%s) here to compare with: name BASE", d.branch, d.branch)
}

// atRevision loads rev: a revision of this repository, else its origin's
// branch of that name, else the fleet repo's branch (fetched, with a note).
func (d *diffRepo) atRevision(rev string, rep *diffReport) (*spec.Fleet, error) {
	h, err := d.repo.ResolveRevision(plumbing.Revision(rev))
	if err == nil {
		return spec.LoadCommit(d.repo, *h, d.dir)
	}
	if o, oerr := d.repo.ResolveRevision(plumbing.Revision("refs/remotes/origin/" + rev)); oerr == nil {
		return spec.LoadCommit(d.repo, *o, d.dir)
	}
	if d.remote == nil || strings.ContainsAny(rev, "~^:@{} ") {
		return nil, fmt.Errorf("revision %q: %w", rev, err)
	}
	fleet, where, rerr := d.remote(rev)
	var serr *spec.Errors
	if rerr != nil && !errors.As(rerr, &serr) {
		return nil, fmt.Errorf("revision %q: not in this repository (%w), nor a branch of the fleet repo: %w", rev, err, rerr)
	}
	rep.Notes = append(rep.Notes, where)
	return fleet, rerr
}

// diffContext reads the inventory and the failed versions from the shared
// state. Unreachable shared state is a note, not a failure: the plan then
// covers the declared nodes only.
func diffContext(ctx context.Context, e *env, o *diffOptions, head *spec.Fleet, rep *diffReport) ([]reconciler.NodeInfo, map[string]map[string]string) {
	failed := map[string]map[string]string{}
	h, err := openFleet(ctx, e, &o.repoFlags, "reconciler-cli")
	var reports map[string]reconciler.NodeReport
	if err == nil {
		reports, err = h.reports(ctx)
	}
	if err != nil {
		rep.Notes = append(rep.Notes, "inventory: declared nodes only (shared state unreadable: "+err.Error()+")")
		return reconciler.Inventory(head.Nodes), failed
	}
	for name := range head.Apps {
		if events, err := h.shared.Record(ctx, name); err == nil {
			failed[name] = reconciler.FailedTargets(events)
		}
	}
	return reconciler.InventoryOf(head.Nodes, reports), failed
}

func printDiff(e *env, output string, rep *diffReport) {
	switch output {
	case "json":
		_ = writeJSON(e, rep)
	case "markdown":
		printDiffMarkdown(e, rep)
	default:
		printDiffText(e, rep)
	}
}

func printDiffText(e *env, rep *diffReport) {
	w := e.stdout
	fmt.Fprintf(w, "diff %s -> %s\n", orDash(rep.Base), orDash(rep.Head))
	for _, x := range rep.Errors {
		fmt.Fprintf(w, "  error: %s\n", x)
	}
	if len(rep.Changes) == 0 && len(rep.Errors) == 0 {
		fmt.Fprintln(w, "no app changes")
	}
	for _, a := range rep.Approvals {
		fmt.Fprintf(w, "%s\n", strings.ReplaceAll(a.text(), "`", ""))
	}
	for _, h := range rep.Holds {
		fmt.Fprintf(w, "node %s: %s\n", h.Node, strings.Join(h.Changes, "; "))
	}
	for _, c := range rep.Changes {
		fmt.Fprintf(w, "\n%s: %s\n", c.App, changeLine(c))
		if c.Plan != nil {
			tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
			fmt.Fprintf(tw, "  strategy\t%s\n  nodes\t%d (%s)\n  estimate\t%s\n", c.Plan.Strategy, len(c.Nodes), strings.Join(c.Nodes, ", "), c.Estimate)
			for _, s := range c.Plan.Stages {
				fmt.Fprintf(tw, "  %s\n", reconciler.StageText(s))
			}
			for k, wave := range c.Plan.Waves {
				fmt.Fprintf(tw, "  wave %d\t%s\n", k+1, strings.Join(wave, ", "))
			}
			if c.Plan.MaxFailures > 0 {
				fmt.Fprintf(tw, "  failure budget\t%s (maxFailures)\n", count(c.Plan.MaxFailures, "node"))
			}
			if a := approvalLine(*c.Plan); a != "" {
				fmt.Fprintf(tw, "  approval\t%s\n", strings.ReplaceAll(a, "`", ""))
			}
			tw.Flush()
			writeGatesText(w, *c.Plan, "  ")
		}
		for _, warn := range c.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", warn)
		}
	}
	for _, s := range rep.Signatures {
		fmt.Fprintf(w, "signature %s %s: %s (%s)\n", s.App, s.Version, okWord(s.OK), s.Detail)
		if s.Swap != "" {
			fmt.Fprintf(w, "swap %s %s: %s\n", s.App, s.Version, reconciler.SwapText(s.Swap))
		}
	}
	printCommitSignatures(w, rep.Commits, false)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func changeLine(c reconciler.AppChange) string {
	switch c.Kind {
	case reconciler.ChangeAdded:
		return "added at " + c.To
	case reconciler.ChangeRemoved:
		return "removed (was " + c.From + ")"
	case reconciler.ChangeEdited:
		return fmt.Sprintf("%s edited (%s)", c.To, strings.Join(c.Fields, ", "))
	}
	return fmt.Sprintf("%s %s -> %s", c.Kind, c.From, c.To)
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}
