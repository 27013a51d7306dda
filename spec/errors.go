package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"
)

// Error is one problem in a fleet repo, at a position in one of its files.
// Line and Column are 1-based; both are 0 when the problem has no position
// (for example a directory without .cue files).
type Error struct {
	File    string
	Line    int
	Column  int
	Message string
}

// Error formats the problem as "file:line:col: message".
func (e Error) Error() string {
	if e.Line == 0 {
		if e.File == "" {
			return e.Message
		}
		return e.File + ": " + e.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Message)
}

// Errors is every problem found in a fleet repo, sorted by file, line and
// column. A spec with any problem is never applied: callers show the list and
// wait for a new commit.
type Errors struct {
	List []Error
}

// Error returns every problem, one per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// errorList collects problems while a fleet is loaded.
type errorList struct {
	list []Error
}

// add records a problem at pos; a message that starts with a path names the
// field it is about ("apps.web.version: got ...").
func (l *errorList) add(pos token.Pos, format string, args ...any) {
	e := Error{Message: fmt.Sprintf(format, args...)}
	if pos.IsValid() {
		p := pos.Position()
		e.File, e.Line, e.Column = p.Filename, p.Line, p.Column
	}
	l.list = append(l.list, e)
}

// addCUE records each error in a CUE error list at its first position
// outside the schema, prefixed with its path when it has one.
func (l *errorList) addCUE(err error) {
	for _, e := range cueerrors.Errors(err) {
		pos := token.NoPos
		for _, p := range cueerrors.Positions(e) {
			if p.IsValid() && p.Filename() != schemaFile {
				pos = p
				break
			}
		}
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if path := strings.Join(e.Path(), "."); path != "" {
			msg = path + ": " + msg
		}
		l.add(pos, "%s", msg)
	}
}

// err returns nil when nothing was recorded, or the sorted, de-duplicated
// problems as *Errors.
func (l *errorList) err() error {
	if len(l.list) == 0 {
		return nil
	}
	list := slices.Clone(l.list)
	slices.SortFunc(list, func(a, b Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
			cmp.Compare(a.Message, b.Message),
		)
	})
	list = slices.Compact(list)
	if n := len(list) - MaxErrors; n > 0 {
		list = append(list[:MaxErrors], Error{Message: fmt.Sprintf("and %d more problems (the first %d are listed)", n, MaxErrors)})
	}
	return &Errors{List: list}
}
