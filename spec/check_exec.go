package spec

import (
	"fmt"
	"path"
	"strings"

	"cuelang.org/go/cue"
)

// checkExec requires an exec health check to run a program of the release:
// the fleet repo may pass arguments and values, never choose a program
// outside the signed release (docs/spec.md, "What the fleet repo may make a
// node do"). The agent checks the program again after substitution, inside
// the verified release directory.
func (c *checker) checkExec(v cue.Value) {
	prog := v.LookupPath(cue.MakePath(cue.Index(0)))
	s, err := prog.String()
	if err != nil {
		return // the schema reports a list that is not of strings
	}
	if why := programProblem(s); why != "" {
		pos := userPos(c.user.LookupPath(prog.Path()))
		if !pos.IsValid() || pos.Filename() == schemaFile {
			pos = c.valuePos(v.Path())
		}
		c.errs.add(pos, "%s: got %q, %s; want a program of the release, as a path relative to the release directory "+
			"such as \"bin/check\" (a shell command goes in a script shipped in the release: exec: [\"bin/health.sh\"])",
			prog.Path(), s, why)
	}
}

// ProgramProblem says why argv[0] of an exec health check cannot name a
// program of the release, or "" when it can: it must be a clean relative
// slash path that stays inside the release, written out (no ${VAR}: node
// variables may be arguments, never the program).
func programProblem(s string) string {
	switch {
	case s == "":
		return "empty"
	case path.IsAbs(s) || strings.HasPrefix(s, "~"):
		return "an absolute path runs a program outside the release"
	case strings.Contains(s, "$"):
		return "the program cannot come from a variable"
	case strings.ContainsAny(s, "\\\x00"):
		return "a backslash or NUL"
	case s == ".." || strings.HasPrefix(s, "../") || strings.Contains(s, "/../") || strings.HasSuffix(s, "/.."):
		return "\"..\" leaves the release"
	case path.Clean(s) != s || s == ".":
		return fmt.Sprintf("not a clean path (write %q)", path.Clean(s))
	case strings.HasPrefix(s, "-"):
		return "starts with \"-\""
	}
	return ""
}
