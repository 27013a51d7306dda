package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/trust"
)

// trustCommands builds verify-commits.
func trustCommands(e *env) []*cobra.Command {
	return []*cobra.Command{verifyCommitsCmd(e)}
}

type verifyCommitsOptions struct {
	repo, branch, dir, output, mode string
	signers                         []string
}

// commitVerdict is one commit in verify-commits' JSON output.
type commitVerdict struct {
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
	Format  string `json:"format,omitempty"` // openpgp, ssh; "" unsigned
	Signer  string `json:"signer,omitempty"`
	Role    string `json:"role,omitempty"`
	Key     string `json:"key,omitempty"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
}

type verifyCommitsReport struct {
	Base    string          `json:"base,omitempty"`
	Head    string          `json:"head"`
	Mode    string          `json:"mode"`
	Commits []commitVerdict `json:"commits"`
	Refused int             `json:"refused"`
}

func verifyCommitsCmd(e *env) *cobra.Command {
	o := &verifyCommitsOptions{}
	c := &cobra.Command{
		Use:   "verify-commits [BASE..HEAD | REV] --trust-signer FILE [flags]",
		Short: "Check commits with the agents' signature rules; exit 1 naming each refused commit",
		Long: `verify-commits checks commits as an agent with the same --trust-signer files
and --require-signed would before moving to them: with chain (the default)
every first-parent commit in BASE..HEAD, merges included, must be signed by a
trusted person, or be a rollback or pause signed by a trusted agent key; with
tip, or given a single REV, HEAD alone. Without arguments it checks the tip of
the tracked branch. It prints one line per commit and exits 1 when any is
refused, for CI and branch protection. Revisions are read in the repository
of the current directory, or --repo (a path, or a URL fetched into memory).`,
		Example: `  reconciler verify-commits origin/main..HEAD --trust-signer ops/allowed_signers
  reconciler verify-commits --repo https://git.example.com/fleet.git --trust-signer people.asc --output json`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(o.signers) == 0 {
				return &usageError{errors.New("verify-commits: --trust-signer is required")}
			}
			if o.output != "text" && o.output != "json" {
				return &usageError{fmt.Errorf("--output %q: want text or json", o.output)}
			}
			mode, err := trust.ParseMode(o.mode)
			if err != nil {
				return &usageError{err}
			}
			return runVerifyCommits(c.Context(), e, o, mode, args)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.repo, "repo", "", "the repository: a path, or a URL (default: the current directory's)")
	fl.StringVar(&o.branch, "tracked-branch", "main", "the branch agents track (checked when no revision is given)")
	fl.StringVar(&o.dir, "dir", "", "directory of the specs in the fleet repo (default: its root)")
	fl.StringArrayVar(&o.signers, "trust-signer", nil, "file of trusted signers, as the agents' (repeatable; required)")
	fl.StringVar(&o.mode, "require-signed", "chain", "chain (every first-parent commit of the range) or tip (HEAD alone)")
	fl.StringVarP(&o.output, "output", "o", "text", "text|json")
	return c
}

func runVerifyCommits(ctx context.Context, e *env, o *verifyCommitsOptions, mode trust.Mode, args []string) error {
	signers, err := trust.LoadSigners(o.signers...)
	if err != nil {
		return fmt.Errorf("verify-commits: %w", err)
	}
	repo, err := openVerifyRepo(ctx, e, o.repo)
	if err != nil {
		return err
	}
	base, head, rep, err := resolveRange(repo, o.branch, args)
	if err != nil {
		return err
	}
	rep.Mode = string(mode)
	results, err := (&trust.Policy{Signers: signers, Mode: mode, SpecDir: o.dir}).Check(repo, base, head)
	if err != nil {
		return fmt.Errorf("verify-commits %s: %w", rangeName(rep), err)
	}
	for _, r := range results {
		v := verdictOf(r)
		if !v.OK {
			rep.Refused++
		}
		rep.Commits = append(rep.Commits, v)
	}
	if o.output == "json" {
		if err := writeJSON(e, rep); err != nil {
			return err
		}
	} else {
		printVerdicts(e.stdout, rep)
	}
	if rep.Refused > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func verdictOf(r trust.Result) commitVerdict {
	v := commitVerdict{Commit: r.Commit.String(), Subject: r.Subject, Format: r.Format, OK: r.Err == nil}
	if r.Signer != nil {
		v.Signer, v.Role, v.Key = r.Signer.Name, string(r.Signer.Role), r.Signer.Key
	}
	if r.Err != nil {
		v.Error = r.Err.Error()
	}
	return v
}

func printVerdicts(w io.Writer, rep *verifyCommitsReport) {
	for _, v := range rep.Commits {
		if v.OK {
			fmt.Fprintf(w, "ok       %.12s %s: signed by %s (%s, %s)\n", v.Commit, v.Subject, v.Signer, v.Role, v.Key)
		} else {
			fmt.Fprintf(w, "REFUSED  %s %s: %s\n", v.Commit, v.Subject, v.Error)
		}
	}
	fmt.Fprintf(w, "%s (%s): %d commits checked, %d refused\n", rangeName(rep), rep.Mode, len(rep.Commits), rep.Refused)
}

func rangeName(rep *verifyCommitsReport) string {
	if rep.Base == "" {
		return rep.Head
	}
	return rep.Base + ".." + rep.Head
}

// openVerifyRepo opens a repository on this machine in place, or fetches
// every branch of a remote one into memory.
func openVerifyRepo(ctx context.Context, e *env, url string) (*git.Repository, error) {
	path := strings.TrimPrefix(url, "file://")
	if path == "" {
		path = e.wd
	}
	if fleetrepo.IsLocalURL(path) {
		repo, err := git.PlainOpen(path) // a bare repository, or the top of a clone
		if err != nil {
			repo, err = git.PlainOpenWithOptions(path, &git.PlainOpenOptions{DetectDotGit: true})
		}
		if err != nil {
			return nil, &usageError{fmt.Errorf("verify-commits: %s is not a Git repository: %w (name one with --repo)", path, err)}
		}
		return repo, nil
	}
	auth, err := fleetrepo.AuthFromEnv(url, e.getenv)
	if err != nil {
		return nil, err
	}
	// Bounded as the agents' fetches are (fleetrepo.DefaultTimeout): a
	// server that accepts and never answers must not hold a CI job for ever.
	cctx, cancel := context.WithTimeoutCause(ctx, 5*fleetrepo.DefaultTimeout,
		fmt.Errorf("no answer from the repository within %v", 5*fleetrepo.DefaultTimeout))
	defer cancel()
	repo, err := git.CloneContext(cctx, memory.NewStorage(), nil, &git.CloneOptions{URL: url, Auth: auth, Mirror: true, Tags: git.AllTags})
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		err = fmt.Errorf("%w: %w", context.Cause(cctx), err)
	}
	if err != nil {
		return nil, fmt.Errorf("verify-commits: fetch %s: %w", url, err)
	}
	return repo, nil
}

// resolveRange reads "BASE..HEAD", "REV" or nothing (the tracked branch).
func resolveRange(repo *git.Repository, branch string, args []string) (base, head plumbing.Hash, rep *verifyCommitsReport, err error) {
	rep = &verifyCommitsReport{Commits: []commitVerdict{}}
	spec := ""
	if len(args) == 1 {
		spec = args[0]
	}
	baseRev, headRev, isRange := strings.Cut(spec, "..")
	switch {
	case spec == "":
		headRev = trackedRev(repo, branch)
	case !isRange:
		headRev = spec
	case headRev == "":
		headRev = "HEAD"
	}
	rep.Head = headRev
	if head, err = resolve(repo, headRev); err != nil {
		return base, head, rep, err
	}
	if isRange {
		rep.Base = baseRev
		base, err = resolve(repo, baseRev)
	}
	return base, head, rep, err
}

func trackedRev(repo *git.Repository, branch string) string {
	for _, rev := range []string{"refs/remotes/origin/" + branch, "refs/heads/" + branch} {
		if _, err := repo.Reference(plumbing.ReferenceName(rev), true); err == nil {
			return rev
		}
	}
	return branch
}

func resolve(repo *git.Repository, rev string) (plumbing.Hash, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return plumbing.ZeroHash, &usageError{fmt.Errorf("verify-commits: revision %q: %w", rev, err)}
	}
	return *h, nil
}
