package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/regfile"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

// upgradeOptions are the upgrade command's flags.
type upgradeOptions struct {
	writeFlags
	strategy, artifact, sha, branch string
	batchSize                       int
	push, wait                      bool
	timeout                         time.Duration
}

func newUpgradeCmd(e *env) *cobra.Command {
	o := &upgradeOptions{}
	c := &cobra.Command{
		Use:   "upgrade APP VERSION [flags]",
		Short: "Write the commit that moves an app to a version",
		Long: `upgrade edits the app's version (and, when asked, its strategy, batch size,
artifact URL and sha256 pin) in the CUE file that declares it, changing only
those lines, and validates the whole fleet with the change. Without --push or
--branch it only shows the change. --push commits it to the tracked branch
(compare-and-swap: a concurrent change makes it fail, never overwrite);
--branch NAME commits it to a new branch for a pull request. --wait follows
the rollout with live progress and exits 0 when it completes, 1 when it
fails or is rolled back; with --output json it prints the result.`,
		Example: `  reconciler upgrade web 1.1.0                       # preview
  reconciler upgrade web 1.1.0 --push --wait
  reconciler upgrade web 1.2.0 --strategy canary --sha256 auto --branch web-1.2.0`,
		Args:              exactArgs(2),
		ValidArgsFunction: completeApps(e, &o.repoFlags),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if c.Flags().Changed("batch-size") && o.batchSize < 1 {
				return &usageError{fmt.Errorf("--batch-size %d: want at least 1 (leave the flag out to keep rollout.batchSize)", o.batchSize)}
			}
			for name, v := range map[string]string{"strategy": o.strategy, "artifact": o.artifact, "sha256": o.sha, "branch": o.branch} {
				if c.Flags().Changed(name) && v == "" {
					return &usageError{fmt.Errorf("--%s \"\": want a value (leave the flag out to keep what the spec has)", name)}
				}
			}
			return runUpgrade(c.Context(), e, o, args[0], args[1])
		},
	}
	o.writeFlags.register(c)
	fl := c.Flags()
	fl.StringVar(&o.strategy, "strategy", "", "set rollout.strategy: rolling, canary or all_at_once")
	fl.IntVar(&o.batchSize, "batch-size", 0, "set rollout.batchSize")
	fl.StringVar(&o.artifact, "artifact", "", "set artifact.url")
	fl.StringVar(&o.sha, "sha256", "", `set artifact.sha256: a hex digest, or "auto" to fetch the artifact and pin its digest`)
	fl.BoolVar(&o.push, "push", false, "commit to the tracked branch")
	fl.StringVar(&o.branch, "branch", "", "commit to this new branch instead (for a pull request)")
	fl.BoolVar(&o.wait, "wait", false, "follow the rollout until it ends (with --push)")
	fl.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up waiting after this long")
	completeWords(c, "strategy", spec.StrategyRolling, spec.StrategyCanary, spec.StrategyAllAtOnce)
	return c
}

func (o *upgradeOptions) check() error {
	if err := o.checkOutput(); err != nil {
		return err
	}
	switch {
	case o.push && o.branch != "":
		return &usageError{errors.New("--push and --branch exclude each other")}
	case o.branch != "" && o.branch == o.branch0():
		return &usageError{fmt.Errorf("--branch %s is the tracked branch: --branch names a new branch for a pull request; use --push to commit to %s", o.branch, o.branch0())}
	case strings.HasPrefix(o.branch, "refs/"):
		return &usageError{fmt.Errorf("--branch %s: give the branch's short name (%s), not a ref", o.branch, strings.TrimPrefix(o.branch, "refs/heads/"))}
	case o.branch != "" && plumbing.NewBranchReferenceName(o.branch).Validate() != nil:
		return &usageError{fmt.Errorf("--branch %q: not a valid branch name (git check-ref-format: no \"..\", spaces, \"~^:?*[\\\", or a trailing \".lock\")", o.branch)}
	case o.wait && !o.push:
		return &usageError{errors.New("--wait follows a rollout: use it with --push")}
	}
	return nil
}

func runUpgrade(ctx context.Context, e *env, o *upgradeOptions, app, version string) error {
	id, err := o.identity(e)
	if err != nil {
		return err
	}
	h, err := o.openAs(ctx, e, id)
	if err != nil {
		return err
	}
	// A commit that lands meanwhile (another app's change) makes the
	// compare-and-swap fail: edit the new tip and try again.
	for attempt := 1; ; attempt++ {
		res, err := upgradeOnce(ctx, e, o, h, id, app, version)
		if errors.Is(err, fleetrepo.ErrConflict) && !errors.Is(err, fleetrepo.ErrBranchExists) && attempt < 3 {
			fmt.Fprintf(e.stderr, "%s moved meanwhile; editing the new tip\n", o.branch0())
			continue
		}
		if err != nil {
			return err
		}
		if !o.wait {
			return res.report(e, o.output)
		}
		if o.output == "text" {
			if err := res.report(e, o.output); err != nil {
				return err
			}
		}
		// --output json prints the rollout's result only: one object. With
		// nothing to commit, --wait follows the rollout already under way.
		return follow(ctx, e, h, o, app, res.To, res.Commit)
	}
}

// upgradeOnce edits the tip and commits (or previews) the upgrade. A tip
// that already has what the flags ask for writes nothing.
func upgradeOnce(ctx context.Context, e *env, o *upgradeOptions, h *fleetHandles, id fleetrepo.Identity, app, version string) (commitResult, error) {
	tip, fleet, err := h.tip(ctx)
	if err != nil {
		return commitResult{}, err
	}
	cur, err := appOf(fleet, app)
	if err != nil {
		return commitResult{}, err
	}
	ed, next, err := upgradeEdit(ctx, e, o, h, tip, app, version)
	if err != nil {
		return commitResult{}, err
	}
	res := commitResult{App: app, Action: "upgrade", From: cur.Version, To: next.Apps[app].Version,
		Branch: o.branch0(), Repo: h.url, Message: o.message}
	if o.branch != "" {
		res.Branch = o.branch
	}
	if res.Message == "" {
		res.Message = upgradeSubject(app, cur.Version, res.To, ed)
	}
	if bytes.Equal(ed.src, ed.old) {
		res.Note = fmt.Sprintf("%s already targets %s on %s (commit %.12s): nothing to commit", app, res.To, o.branch0(), tip.String())
		return res, nil
	}
	if !o.push && o.branch == "" {
		res.Patch = ed.patch()
		res.Note = fmt.Sprintf("Nothing written: add --push to commit it to %s, or --branch NAME for a pull request.", o.branch0())
		return res, nil
	}
	commit, err := h.desired.Commit(ctx, fleetrepo.CommitRequest{Expect: tip, Files: map[string][]byte{ed.path: ed.src},
		Message: res.Message, Author: id, Branch: o.branch,
		Trailers: fleetrepo.Trailers{App: app, From: cur.Version, To: res.To, Reason: o.reason}})
	if errors.Is(err, fleetrepo.ErrBranchExists) {
		return commitResult{}, fmt.Errorf("upgrade %s to %s: %w (--branch names a new branch: pick another name, or use --push to commit to %s)", app, version, err, o.branch0())
	}
	if err != nil {
		return commitResult{}, fmt.Errorf("upgrade %s to %s: %w", app, version, err)
	}
	res.Commit, res.Pushed = commit.String(), true
	if o.branch != "" {
		res.Next = fmt.Sprintf("branch %s is in %s: open a pull request from it; preview it with: reconciler diff %s %s --output markdown",
			o.branch, h.url, o.branch0(), o.branch)
	}
	return res, nil
}

// upgradeSubject says what the commit changes: the version move, or the
// fields set when the version stays.
func upgradeSubject(app, from, to string, ed *edit) string {
	if from != to {
		return fmt.Sprintf("%s: upgrade from %s to %s", app, from, to)
	}
	fields := slices.DeleteFunc(slices.Clone(ed.fields), func(f string) bool { return f == "version" })
	if len(fields) == 0 {
		return fmt.Sprintf("%s: nothing to change (version stays %s)", app, to)
	}
	return fmt.Sprintf("%s: set %s (version stays %s)", app, strings.Join(fields, ", "), to)
}

func (o *upgradeOptions) branch0() string { return o.repoFlags.branch }

// upgradeEdit makes and validates the edit; --sha256 auto pins the digest
// of the artifact the edited spec names.
func upgradeEdit(ctx context.Context, e *env, o *upgradeOptions, h *fleetHandles, tip plumbing.Hash, app, version string) (*edit, *spec.Fleet, error) {
	set := []fieldValue{{"version", version}}
	if o.strategy != "" {
		set = append(set, fieldValue{"rollout.strategy", o.strategy})
	}
	if o.batchSize > 0 {
		set = append(set, fieldValue{"rollout.batchSize", o.batchSize})
	}
	if o.artifact != "" {
		set = append(set, fieldValue{"artifact.url", o.artifact})
	}
	if o.sha != "" && o.sha != "auto" {
		set = append(set, fieldValue{"artifact.sha256", o.sha})
	}
	ed, err := editApp(h, tip, app, set)
	if err != nil {
		return nil, nil, err
	}
	next, err := ed.validate(e)
	if err != nil || o.sha != "auto" {
		return ed, next, err
	}
	sum, err := artifactDigest(ctx, next.Apps[app].Artifact.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("--sha256 auto: %w", err)
	}
	if ed, err = editApp(h, tip, app, append(set, fieldValue{"artifact.sha256", sum})); err != nil {
		return nil, nil, err
	}
	next, err = ed.validate(e)
	return ed, next, err
}

// artifactDigest fetches an artifact and returns its sha256, streaming.
func artifactDigest(ctx context.Context, url string) (string, error) {
	cache, err := os.MkdirTemp("", "reconciler-upgrade-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(cache)
	f, err := release.NewFetcher(release.Options{CacheDir: cache})
	if err != nil {
		return "", err
	}
	p, err := f.Fetch(ctx, url)
	if err != nil {
		return "", err
	}
	file, err := regfile.Open(p)
	if err != nil {
		return "", err
	}
	defer file.Close()
	hash := sha256.New()
	if _, err := io.Copy(hash, file); err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}
