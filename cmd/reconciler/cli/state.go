package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// stateCommands builds leases and leases break (the shared state, issue 4).
func stateCommands(e *env) []*cobra.Command {
	return []*cobra.Command{leasesCmd(e)}
}

// stateFlags name the repository of the shared state (and, for the slot
// range, the tracked branch).
type stateFlags struct {
	repo, branch, dir, output string
	sharedFlags
}

func (f *stateFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.repo, "repo", "", "fleet repo URL: a path, file://, http(s)://, ssh:// (default: the current directory's repo, or its origin)")
	f.sharedFlags.register(fl)
	fl.StringVar(&f.branch, "tracked-branch", "main", "the branch agents track (for the app's batch size)")
	fl.StringVar(&f.dir, "dir", "", "directory of the specs in the fleet repo (default: its root)")
	registerOutput(c, &f.output)
}

// open opens the shared state in memory (the commands are one-shot).
func (f *stateFlags) open(ctx context.Context, e *env) (sharedState, error) {
	who := e.getenv("USER")
	if who == "" {
		who = "operator"
	}
	url, endpoints, err := f.gitURL()
	if err != nil {
		return nil, err
	}
	if endpoints != nil {
		return f.openEtcd(e, endpoints, who, "", nil)
	}
	if url == "" {
		if url, err = resolveRepo(e, f.repo); err != nil {
			return nil, err
		}
	}
	auth, err := fleetrepo.AuthFromEnv(url, e.getenv)
	if err != nil {
		return nil, err
	}
	return fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: url, Auth: auth, Identity: fleetrepo.Identity{Name: who}})
}

func leasesCmd(e *env) *cobra.Command {
	var f stateFlags
	c := &cobra.Command{
		Use:   "leases [APP]",
		Short: "Show who holds which lease slot, since when, renewed how long ago",
		Long: `leases lists the lease slots of one app (or of every app) from
refs/reconciler/leases/<app>/<slot> in the shared state.

Times are the holder's own clock, for information: agents decide expiry only
by how long they themselves have seen a lease unchanged, never from these
times. A lease whose last renewal is older than its TTL is marked "stale?":
its holder has probably stopped; agents take such a lease over by themselves,
and "reconciler leases break" frees it at once.`,
		Args: rangeArgs(0, 1),
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return completeApps(e, f.repoFlags())(c, args, prefix)
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			app := ""
			if len(args) == 1 {
				app = args[0]
			}
			return runLeases(c.Context(), e, &f, app)
		},
	}
	f.register(c)
	c.AddCommand(leasesBreakCmd(e))
	return c
}

func runLeases(ctx context.Context, e *env, f *stateFlags, app string) error {
	sh, err := f.open(ctx, e)
	if err != nil {
		return err
	}
	leases, err := sh.Leases(ctx, app)
	if err != nil {
		return err
	}
	for _, b := range sh.BadRefs() {
		fmt.Fprintf(e.stderr, "warning: skipped unreadable lease %s at %.12s: %s (leases break overwrites it)\n", b.Ref, b.Commit, b.Err)
	}
	if app != "" && len(leases) == 0 {
		// No lease of an app the fleet does not have is the unknown-app
		// failure of every command; a fleet that cannot be read (a
		// shared-state repo alone) leaves "no leases".
		if _, err := slotCount(ctx, e, f, app); errors.Is(err, errNoApp) {
			return err
		}
	}
	now := time.Now()
	view := reconciler.LeaseStatuses(leases, now)
	if f.output == "json" {
		return writeJSON(e, view)
	}
	if len(leases) == 0 {
		fmt.Fprintf(e.stdout, "no leases%s in %s\n", forApp(app), sh.URL())
		return nil
	}
	printLeases(e, view, now)
	return nil
}

func forApp(app string) string {
	if app == "" {
		return ""
	}
	return " for " + app
}

// printLeases writes the lease table.
func printLeases(e *env, leases []reconciler.LeaseStatus, now time.Time) {
	tw := tabwriter.NewWriter(e.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSLOT\tHOLDER\tROLLOUT\tSINCE\tRENEWED\tTTL\tSTATE")
	for _, l := range leases {
		if l.State == reconciler.LeaseFree {
			fmt.Fprintf(tw, "%s\t%d\t-\t-\t-\t-\t%s\tfree\n", l.App, l.Slot, l.TTL)
			continue
		}
		state := l.State
		if state == reconciler.LeaseStale {
			state = "stale?" // by the holder's clock: a hint, not a verdict
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s ago\t%s\t%s\n", l.App, l.Slot, l.Holder, shortID(l.Rollout),
			l.Acquired.UTC().Format(time.DateTime), ago(now.Sub(l.Renewed)), l.TTL, state)
	}
	tw.Flush()
}

func shortID(id string) string {
	if len(id) == 40 {
		return id[:12]
	}
	if id == "" {
		return "-"
	}
	return id
}

func ago(d time.Duration) string {
	if d < 0 {
		return "0s"
	}
	return d.Round(time.Second).String()
}

func leasesBreakCmd(e *env) *cobra.Command {
	var f stateFlags
	c := &cobra.Command{
		Use:   "break APP SLOT",
		Short: "Free a lease slot whatever its state (for a holder known to be dead)",
		Long: `break frees refs/reconciler/leases/<APP>/<SLOT> by a compare-and-swap
commit naming you and the holder it had. The holder's next renewal fails and
it stops acting under the lease. Use it for a holder you know is dead and
whose slot you want back before its TTL runs out on the other agents. A slot
the app cannot have (outside 0..batchSize-1, and never used) is an error.`,
		Args: exactArgs(2),
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return completeApps(e, f.repoFlags())(c, args, prefix)
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			slot, err := strconv.Atoi(args[1])
			if err != nil || slot < 0 {
				return &usageError{fmt.Errorf("slot %q: want a number from 0", args[1])}
			}
			return runBreak(c.Context(), e, &f, args[0], slot)
		},
	}
	f.register(c)
	return c
}

// breakResult is what leases break prints with --output json.
type breakResult struct {
	App     string `json:"app"`
	Slot    int    `json:"slot"`
	Broken  bool   `json:"broken"`            // false: the slot was free already
	Holder  string `json:"holder,omitempty"`  // who held it
	Rollout string `json:"rollout,omitempty"` // for which rollout
	Note    string `json:"note,omitempty"`
}

func runBreak(ctx context.Context, e *env, f *stateFlags, app string, slot int) error {
	sh, err := f.open(ctx, e)
	if err != nil {
		return err
	}
	if err := checkSlot(ctx, e, f, sh, app, slot); err != nil {
		return err
	}
	before, err := sh.Break(ctx, app, slot)
	if errors.Is(err, fleetrepo.ErrConflict) {
		return fmt.Errorf("%w\nThe lease changed while breaking it; run 'reconciler leases %s' and try again", err, app)
	}
	if err != nil {
		return err
	}
	res := breakResult{App: app, Slot: slot, Broken: before.Held(), Holder: before.Holder, Rollout: before.Rollout}
	if !res.Broken {
		res.Note = fmt.Sprintf("lease %s/%d is free: nothing to break", app, slot)
	}
	if f.output == "json" {
		return writeJSON(e, res)
	}
	if !res.Broken {
		fmt.Fprintln(e.stdout, res.Note)
		return nil
	}
	fmt.Fprintf(e.stdout, "broke lease %s/%d (was held by %s for rollout %s)\n", app, slot, before.Holder,
		strings.TrimSpace(shortID(before.Rollout)))
	return nil
}

// checkSlot fails for a slot the app cannot have: not a lease ref in the
// shared state, and outside 0..n-1 where n is the app's slot count at the
// tip of the tracked branch (batchSize; every targeted node for
// all_at_once).
func checkSlot(ctx context.Context, e *env, f *stateFlags, sh sharedState, app string, slot int) error {
	leases, err := sh.Leases(ctx, app)
	if err != nil {
		return err
	}
	for _, l := range leases {
		if l.Slot == slot {
			return nil
		}
	}
	// An undecodable lease (skipped by the read above) exists: breaking is
	// how it is repaired, whatever the slot count says now.
	for _, b := range sh.BadRefs() {
		if b.Ref == fmt.Sprintf("refs/reconciler/leases/%s/%d", app, slot) {
			return nil
		}
	}
	n, err := slotCount(ctx, e, f, app)
	if errors.Is(err, errNoApp) {
		return err
	}
	if err != nil {
		return fmt.Errorf("no lease %s/%d in %s, and the app's slot count is unknown: %w", app, slot, sh.URL(), err)
	}
	if slot < n {
		return nil
	}
	return fmt.Errorf("lease slot %d of %s does not exist: %s has slots 0..%d (rollout.batchSize %d on %s)",
		slot, app, app, n-1, n, f.branch)
}

// slotCount is how many lease slots app may use at the tip's last valid specs.
func slotCount(ctx context.Context, e *env, f *stateFlags, app string) (int, error) {
	h, err := openFleet(ctx, e, f.repoFlags(), "reconciler-cli")
	if err != nil {
		return 0, err
	}
	v, err := h.view(ctx)
	if err != nil {
		return 0, err
	}
	a, err := appOf(v.fleet, app)
	if err != nil {
		return 0, err
	}
	n := a.Rollout.BatchSize
	if a.Rollout.Strategy == spec.StrategyAllAtOnce {
		for _, w := range reconciler.PlanWaves(a, reconciler.Inventory(v.fleet.Nodes)).Waves {
			n = max(n, len(w))
		}
	}
	return max(n, 1), nil
}

// repoFlags are the fleet flags these ones name.
func (f *stateFlags) repoFlags() *repoFlags {
	return &repoFlags{repo: f.repo, sharedFlags: f.sharedFlags, branch: f.branch, dir: f.dir, output: f.output}
}
