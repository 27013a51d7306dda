package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
	"github.com/fleetops/reconciler/spec/isolate"
)

// specCommands builds validate, export and plan: the commands that read a
// fleet directory and change nothing.
func specCommands(e *env) []*cobra.Command {
	return []*cobra.Command{validateCmd(e), exportCmd(e), planCmd(e)}
}

// validateResult is what validate prints with --output json.
type validateResult struct {
	Dir    string      `json:"dir"`
	Valid  bool        `json:"valid"`
	Apps   int         `json:"apps"`
	Nodes  int         `json:"nodes"`
	Errors []specError `json:"errors,omitempty"`
}

// specError is one problem of a spec, in JSON (line and column from 1; 0
// when the problem has no position).
type specError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
}

func validateCmd(e *env) *cobra.Command {
	var output string
	var bound evalBound
	c := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a fleet directory's specs; every problem as file:line:col: message",
		Long: `validate loads the .cue files of the fleet in DIR (default ".") with the
schema built into reconciler, and reports every problem, one per line on
stderr, as "file:line:col: message". It exits 0 when the specs are valid
(printing a one-line summary), 1 when they are not, 2 on a usage error.
With --output json it prints {"dir", "valid", "apps", "nodes", "errors":
[{"file", "line", "column", "message"}]} on stdout in both cases.`,
		Example: `  reconciler validate examples/fleet
  reconciler validate            # the fleet in the current directory`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := bound.check(); err != nil {
				return err
			}
			return runValidate(c.Context(), e, dirArg(args, 1), output, bound.loader())
		},
	}
	bound.register(c)
	registerOutput(c, &output)
	return c
}

func runValidate(ctx context.Context, e *env, dir, output string, l isolate.Loader) error {
	if output == "text" {
		f, err := loadBounded(ctx, dir, l)
		if f, err = printProblems(e, dir, f, err); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: %s, %s: valid\n", dir, count(len(f.Apps), "app"), count(len(f.Nodes), "node"))
		return nil
	}
	f, err := loadBounded(ctx, dir, l)
	res := validateResult{Dir: dir, Valid: err == nil}
	var errs *spec.Errors
	var limit *isolate.LimitError
	switch {
	case errors.As(err, &limit):
		res.Errors = append(res.Errors, specError{Message: limit.Error()})
	case errors.As(err, &errs):
		for _, x := range errs.List {
			res.Errors = append(res.Errors, specError{File: x.File, Line: x.Line, Column: x.Column, Message: x.Message})
		}
	case err != nil:
		return err
	default:
		res.Apps, res.Nodes = len(f.Apps), len(f.Nodes)
	}
	if err := writeJSON(e, res); err != nil {
		return err
	}
	if !res.Valid {
		return &exitError{code: exitFailure}
	}
	return nil
}

func exportCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "export [DIR]",
		Short: "Print a fleet directory's resolved specs as JSON, defaults filled in",
		Long: `export loads the fleet in DIR (default ".") and prints it as JSON: every app
with templates applied and every default filled in, and the declared nodes.
Invalid specs are reported as by validate (exit 1). Its output is JSON
whatever --output says (json is the only format).`,
		Example: `  reconciler export examples/fleet
  reconciler export examples/fleet | jq '.apps.workload.rollout'`,
		Args: rangeArgs(0, 1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "json"); err != nil {
				return err
			}
			f, err := loadFleet(e, dirArg(args, 1))
			if err != nil {
				return err
			}
			return writeJSON(e, f)
		},
	}
	registerOutput(c, &output, "json")
	return c
}

func planCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "plan [DIR] APP",
		Short: "Show the waves in which APP's version reaches the declared nodes",
		Long: `plan loads the fleet in DIR (default ".") and shows the waves in which APP's
version would reach the nodes the fleet declares, in order: rolling in
batches of batchSize, canary with canary.count nodes first, or all at once.
Nodes are ordered by name. Nodes the app lists but the fleet does not declare
are shown apart ("unknown"): they join when their agents announce themselves.`,
		Example: `  reconciler plan examples/fleet snake_game
  reconciler plan examples/fleet workload --output json`,
		Args: rangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return runPlan(e, dirArg(args, 2), args[len(args)-1], output)
		},
	}
	registerOutput(c, &output)
	return c
}

func runPlan(e *env, dir, appName, output string) error {
	f, err := loadFleet(e, dir)
	if err != nil {
		return err
	}
	app, ok := f.Apps[appName]
	if !ok {
		names := slices.Sorted(maps.Keys(f.Apps))
		return fmt.Errorf("plan: no app %q in %s (apps: %s)", appName, dir, strings.Join(names, ", "))
	}
	p := reconciler.PlanWaves(app, reconciler.Inventory(f.Nodes))
	if output == "json" {
		return writeJSON(e, p)
	}
	writePlan(e, p, app, len(f.Nodes))
	return nil
}

// dirArg is the DIR argument: the first of args when there are n of them,
// else the current directory.
func dirArg(args []string, n int) string {
	if len(args) == n {
		return args[0]
	}
	return "."
}

// loadFleet loads the fleet in dir. Spec problems are printed on stderr, one
// per line, and turn into exit status 1.
func loadFleet(e *env, dir string) (*spec.Fleet, error) {
	f, err := spec.LoadDir(dir)
	return printProblems(e, dir, f, err)
}

// printProblems prints the spec problems of err on stderr, one per line,
// and turns them into exit status 1.
func printProblems(e *env, dir string, f *spec.Fleet, err error) (*spec.Fleet, error) {
	var limit *isolate.LimitError
	if errors.As(err, &limit) {
		fmt.Fprintln(e.stderr, limit.Error())
		return nil, &exitError{exitFailure, dir + " does not validate: " + limit.Error()}
	}
	var errs *spec.Errors
	if errors.As(err, &errs) {
		for _, x := range errs.List {
			fmt.Fprintln(e.stderr, x.Error())
		}
		return nil, &exitError{exitFailure, dir + " does not validate: " + specErrorSummary(errs)}
	}
	return f, err
}

// count writes "1 app", "4 apps".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// evalBound is --spec-timeout and --spec-memory of a command that
// evaluates a fleet repo's specs in a child process (validate: a CI job
// validating a pull request must not hang on a hostile comprehension).
type evalBound struct {
	timeout   time.Duration
	memoryMiB int64
}

func (b *evalBound) register(c *cobra.Command) {
	c.Flags().DurationVar(&b.timeout, "spec-timeout", isolate.DefaultTimeout, "bound on evaluating the specs (in a child process); over it they are refused, exit 1")
	c.Flags().Int64Var(&b.memoryMiB, "spec-memory", isolate.DefaultMemory>>20, "bound on the memory (address space, MiB) evaluating the specs may take")
}

// check refuses limits that make no sense (a usage error).
func (b *evalBound) check() error {
	switch {
	case b.timeout <= 0:
		return &usageError{fmt.Errorf("--spec-timeout %v: want a positive duration", b.timeout)}
	case b.memoryMiB < 64:
		return &usageError{fmt.Errorf("--spec-memory %d: want at least 64 (MiB)", b.memoryMiB)}
	}
	return nil
}

func (b *evalBound) loader() isolate.Loader {
	return isolate.Loader{Timeout: b.timeout, Memory: b.memoryMiB << 20}
}

// loadBounded reads the fleet in dir and evaluates it with l, under its
// limits; the files' positions are as spec.LoadDir gives them.
func loadBounded(ctx context.Context, dir string, l isolate.Loader) (*spec.Fleet, error) {
	files, err := spec.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	return l.LoadSpec(ctx, files)
}
