package cli

import (
	"fmt"
	"strings"
)

// commitResult is what upgrade, rollback, pause and resume print with
// --output json: one object saying what was (or would be) committed where.
type commitResult struct {
	App    string `json:"app"`
	Action string `json:"action"` // upgrade, rollback, pause, resume, promote
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	// Commit is the new commit; "" when nothing was written (a preview, or
	// nothing to change: see Note).
	Commit string `json:"commit"`
	Branch string `json:"branch"` // the branch written (or that would be)
	Repo   string `json:"repo"`   // the repository it is in
	// Pushed is true when Commit is on Branch in Repo.
	Pushed  bool   `json:"pushed"`
	Message string `json:"message,omitempty"` // the commit's subject
	Note    string `json:"note,omitempty"`    // why nothing was written
	// Patch is the change of a preview (upgrade without --push/--branch).
	Patch string `json:"patch,omitempty"`
	// AtOnce (rollback only) says whether agents apply the commit at once
	// (true) or in waves under leases (false, rollback --waves).
	AtOnce *bool `json:"atOnce,omitempty"`
	// Wave (promote only) is the wave approved, counted from 1: every
	// gated wave up to it opens.
	Wave int `json:"wave,omitempty"`
	// Next says what to do next (open a pull request, preview with diff).
	Next string `json:"next,omitempty"`
}

// report prints a writer's result: the JSON object, or for people one line
// on stderr (and a preview's patch on stdout).
func (r commitResult) report(e *env, output string) error {
	if output == "json" {
		return writeJSON(e, r)
	}
	switch {
	case r.Patch != "":
		fmt.Fprint(e.stdout, r.Patch)
		fmt.Fprintf(e.stdout, "\n%s\n\n%s\n", r.Message, r.Note)
	case r.Commit == "":
		fmt.Fprintln(e.stderr, r.Note)
	default:
		fmt.Fprintf(e.stderr, "committed %.12s to %s: %s\n", r.Commit, r.Branch, r.Message)
	}
	if r.Next != "" {
		fmt.Fprintln(e.stderr, r.Next)
	}
	return nil
}

// versionMove is "from 1.0.0 to 1.1.0", for messages.
func versionMove(from, to string) string {
	var b strings.Builder
	if from != "" {
		b.WriteString("from " + from + " ")
	}
	b.WriteString("to " + to)
	return b.String()
}
