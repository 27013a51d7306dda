// Package cli builds reconciler's command tree. Each invocation of Main builds
// a fresh cobra tree: there are no package-level commands or settings, so the
// CLI can run many times in one process (testscript does exactly that).
//
// Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/internal/redact"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2

	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

// env is what a command may take from the process: streams, environment and
// working directory. Commands never read os.* directly, so tests can drive them.
type env struct {
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	getenv func(string) string
	wd     string // the working directory ("" when unknown)
}

// exitError carries an exit code out of a command whose message was already
// printed (for example a list of validation errors). summary says it in
// one line for the JSON error object of a command that printed no JSON.
type exitError struct {
	code    int
	summary string
}

func (e *exitError) Error() string {
	if e.summary != "" {
		return e.summary
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// countingWriter counts what a command wrote on stdout.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// usageError marks an error as the user's misuse of flags or arguments (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Main runs the command line with the process's arguments and streams and
// returns the exit code.
//
// SIGINT and SIGTERM cancel the context every command runs with. A command
// that does not return within interruptGrace of the signal (evaluating a
// large spec, say, which CUE cannot interrupt) is abandoned: Main returns
// exitInterrupted and main exits. The agent has its own shutdown deadlines
// and gets no grace limit; a second signal ends any command at once.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	wd, _ := os.Getwd()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, getenv: os.Getenv, wd: wd}
	args := os.Args[1:]
	done := make(chan int, 1)
	go func() { done <- run(ctx, e, args) }() // abandoned only when main exits
	select {
	case code := <-done:
		return code
	case <-ctx.Done():
	}
	stop() // from now on a signal ends the process (Go's default)
	var timeout <-chan time.Time
	if cmd, _, err := newRootCmd(e).Find(args); err != nil || cmd.Name() != "agent" {
		timeout = time.After(interruptGrace)
	}
	select {
	case code := <-done:
		return code
	case <-timeout:
		fmt.Fprintln(e.stderr, "reconciler: interrupted")
		return exitInterrupted
	}
}

// interruptGrace is how long a command may take to return after SIGINT or
// SIGTERM before Main abandons it.
const interruptGrace = time.Second

func run(ctx context.Context, e *env, args []string) int {
	out := &countingWriter{w: e.stdout}
	// Messages never show credentials (internal/redact); stdout carries
	// data (an export keeps the URLs it was given) and is left as it is.
	e = &env{stdout: out, stderr: redact.Writer(e.stderr), stdin: e.stdin, getenv: e.getenv, wd: e.wd}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if out.n == 0 && wantsJSON(cmd) { // said on stderr; a script still reads JSON
			writeJSONError(e, ee, ee.code)
		}
		return ee.code
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Stopped by SIGINT or SIGTERM (a spec evaluation's child, say):
		// the same word and code as a command abandoned after the grace.
		fmt.Fprintln(e.stderr, "reconciler: interrupted")
		return exitInterrupted
	}
	code := exitFailure
	var ue *usageError
	if errors.As(err, &ue) {
		code = exitUsage
	}
	fmt.Fprintf(e.stderr, "reconciler: %v\n", err)
	if wantsJSON(cmd) || (code == exitUsage && out.n == 0 && argsWantJSON(args)) {
		writeJSONError(e, err, code)
	}
	return code
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "reconciler",
		Short: "Fleet-wide, zero-downtime application upgrades driven by Git",
		Long: `reconciler keeps a fleet's application versions in a Git repository.
Agents on every node converge to it in waves gated by leases, verify signed
releases, check health between waves and roll back by commit.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// An unknown subcommand is a usage error (exit 2), like an unknown
		// flag; without Args cobra reports it as a plain failure.
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &usageError{fmt.Errorf("unknown command %q (see '%s --help')", args[0], c.CommandPath())}
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	// Flag parse errors are usage errors (exit 2).
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.Version = buildOf().String()
	root.SetVersionTemplate("reconciler {{.Version}}\n")
	for _, add := range commandSets() {
		for _, c := range add(e) {
			root.AddCommand(c)
		}
	}
	return root
}

// commandSets lists the constructors of every command group; each group lives
// in its own file.
func commandSets() []func(*env) []*cobra.Command {
	return []func(*env) []*cobra.Command{
		specCommands,    // validate, export, plan (spec.go)
		signingCommands, // keygen, sign, verify, release (signing.go)
		stateCommands,   // leases (state.go)
		agentCommands,   // agent (agent.go)
		fleetCommands,   // upgrade, rollback, pause, resume, status, audit, history, versions, diff (fleet.go)
		trustCommands,   // verify-commits (trust_verify.go)
		versionCommands, // version (version.go)
		uiCommands,      // ui (ui.go)
	}
}

// exactArgs is cobra.ExactArgs that reports a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(c, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs that reports a usage error.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(min, max)(c, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
