package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/internal/redact"
)

// Every command takes --output (-o): "text" (for people, the default) or
// "json" (one JSON document on stdout, for machines; docs/json.md); some add
// formats (diff: markdown). A command that fails with --output json also
// prints {"error": ..., "exitCode": ...} on stdout, besides the message on
// stderr, so a script always reads one JSON document.

// outputFormats are what --output accepts by default.
var outputFormats = []string{"text", "json"}

// registerOutput adds --output to c, bound to out, with shell completion of
// the formats (the first is the default).
func registerOutput(c *cobra.Command, out *string, formats ...string) {
	if len(formats) == 0 {
		formats = outputFormats
	}
	c.Flags().StringVarP(out, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	completeWords(c, "output", formats...)
}

// checkOutput is a usage error unless out is one of formats (default text, json).
func checkOutput(out string, formats ...string) error {
	if len(formats) == 0 {
		formats = outputFormats
	}
	if slices.Contains(formats, out) {
		return nil
	}
	return &usageError{fmt.Errorf("--output %q: want %s", out, strings.Join(formats, " or "))}
}

// wantsJSON reports whether the command that ran was asked for JSON with
// --output json (export, JSON by default, keeps stdout empty on failure).
func wantsJSON(c *cobra.Command) bool {
	if c == nil {
		return false
	}
	f := c.Flags().Lookup("output")
	return f != nil && f.Changed && f.Value.String() == "json"
}

// argsWantJSON reports whether args ask for --output json, for a usage
// error found before the flags were parsed (an unknown flag or command).
func argsWantJSON(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "-ojson" || a == "-o=json" || a == "--output=json":
			return true
		case (a == "-o" || a == "--output") && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

func writeJSON(e *env, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the JSON output: %w", err)
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// jsonError is what a failed command prints on stdout with --output json.
type jsonError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exitCode"`
}

func writeJSONError(e *env, err error, code int) {
	if werr := writeJSON(e, jsonError{Error: redact.String(err.Error()), ExitCode: code}); werr != nil {
		fmt.Fprintf(e.stderr, "reconciler: %v\n", werr)
	}
}
