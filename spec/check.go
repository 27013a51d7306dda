package spec

import (
	"fmt"
	"slices"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"
)

// checker walks a fleet's value (the user's files unified with #Fleet) beside
// the schema, and records every problem, not only the first one CUE reports.
//
// CUE reports errors in phases (conflicts, then closedness, then missing
// values), so the checker validates each leaf field on its own, checks field
// names against the schema itself (a misspelled field is otherwise hidden by
// any other error), and runs the @check rules CUE cannot express.
type checker struct {
	user     cue.Value       // the fleet as written: positions and "got" values
	declared map[string]Node // the declared inventory, nil if it does not decode
	errs     errorList
}

// walk checks v, whose schema is schema (a zero Value when the schema says
// nothing more about it).
func (c *checker) walk(v, schema cue.Value) {
	if schema.Exists() && schema.IncompleteKind()&cue.StructKind != 0 {
		if it, err := v.Fields(); err == nil {
			c.walkStruct(v, it, schema)
			return
		}
	}
	c.leaf(v, schema)
}

// walkStruct checks each field of the struct v, then the struct's own @check.
func (c *checker) walkStruct(v cue.Value, it *cue.Iterator, schema cue.Value) {
	for it.Next() {
		sel := it.Selector()
		if !schema.Allows(sel) {
			c.unknownField(it.Value().Path(), sel, schema)
			continue
		}
		c.walk(it.Value(), fieldSchema(schema, sel))
	}
	c.runCheck(v)
}

// fieldSchema returns the schema of field sel of a struct whose schema is
// schema: the field itself, or the pattern that applies to any name.
func fieldSchema(schema cue.Value, sel cue.Selector) cue.Value {
	if f := schema.LookupPath(cue.MakePath(sel)); f.Exists() {
		return f
	}
	return schema.LookupPath(cue.MakePath(cue.AnyString))
}

// leaf validates a field that is not walked into, then runs its @check.
func (c *checker) leaf(v, schema cue.Value) {
	err := v.Validate(cue.Concrete(true))
	if err == nil {
		c.runCheck(v)
		return
	}
	path := v.Path()
	u := c.user.LookupPath(path)
	if v.Validate() == nil {
		c.incomplete(v, u, schema, err)
		return
	}
	if refersElsewhere(u.Source()) && causedElsewhere(err, u.Source()) {
		return // the field it refers to is reported instead
	}
	if want, ok := wantOf(v, schema); ok && u.Exists() && u.Err() == nil {
		c.errs.add(c.valuePos(path), "%s: got %s, want %s", path, show(u), want)
		return
	}
	c.addCUE(path, err)
}

// wantOf says what a field expects: its @want attribute, or for a struct
// of the schema (an app, a node) the fields it takes.
func wantOf(v, schema cue.Value) (string, bool) {
	if want, ok := attrString(v, "want"); ok {
		return want, true
	}
	if schema.Exists() && schema.IncompleteKind() == cue.StructKind {
		if names := fieldNames(schema); len(names) > 0 {
			return "a struct with " + strings.Join(names, ", "), true
		}
	}
	return "", false
}

// addCUE records err with CUE's own message.
func (c *checker) addCUE(path cue.Path, err error) {
	if len(path.Selectors()) == 0 {
		c.errs.add(c.errPos(path, err), "%s", cueMessage(err))
		return
	}
	c.errs.add(c.errPos(path, err), "%s: %s", path, cueMessage(err))
}

// incomplete records a field that has no concrete value: missing, or given
// only a type. A field whose value (or default) refers to another field is
// left alone: the field it refers to is reported instead.
func (c *checker) incomplete(v, u, schema cue.Value, err error) {
	path := v.Path()
	switch {
	case !u.Exists() && hasDefault(schema):
		return
	case u.Exists() && refersElsewhere(u.Source()):
		return
	}
	want, ok := attrString(v, "want")
	if !ok {
		c.addCUE(path, err)
		return
	}
	c.errs.add(c.pos(path), "%s: missing, want %s", path, want)
}

// unknownField records a field the schema does not allow, with the nearest
// allowed name when one is close.
func (c *checker) unknownField(path cue.Path, sel cue.Selector, schema cue.Value) {
	allowed := fieldNames(schema)
	name := sel.Unquoted()
	if s := closest(name, allowed); s != "" {
		c.errs.add(c.labelPos(path), "%s: unknown field %q, did you mean %q?", path, name, s)
		return
	}
	c.errs.add(c.labelPos(path), "%s: unknown field %q, want one of %s", path, name, strings.Join(allowed, ", "))
}

// pos is the position of path in the user's files, or of its nearest
// ancestor that the user wrote (a missing field is reported at its parent).
func (c *checker) pos(path cue.Path) token.Pos {
	sels := path.Selectors()
	for i := len(sels); i > 0; i-- {
		if p := userPos(c.user.LookupPath(cue.MakePath(sels[:i]...))); p.IsValid() && p.Filename() != schemaFile {
			return p
		}
	}
	return token.NoPos
}

// valuePos is where the user wrote the value of path.
func (c *checker) valuePos(path cue.Path) token.Pos { return c.fieldPos(path, false) }

// labelPos is where the user wrote the name of the field at path.
func (c *checker) labelPos(path cue.Path) token.Pos { return c.fieldPos(path, true) }

func (c *checker) fieldPos(path cue.Path, label bool) token.Pos {
	f, ok := c.user.LookupPath(path).Source().(*ast.Field)
	switch {
	case !ok:
		return c.pos(path)
	case label:
		return f.Label.Pos()
	default:
		return f.Value.Pos()
	}
}

// userPos is where the user wrote u. When u unifies several declarations
// (a template and the app's own block, say), the last one in the files is
// taken: templates are usually written first.
func userPos(u cue.Value) token.Pos {
	p := u.Pos()
	if op, args := u.Expr(); op == cue.AndOp {
		for _, a := range args {
			if q := a.Pos(); q.IsValid() && (!p.IsValid() || q.Compare(p) > 0) {
				p = q
			}
		}
	}
	return p
}

// causedElsewhere reports whether err points at a position outside the
// field src: an error in a value the field refers to.
func causedElsewhere(err error, src ast.Node) bool {
	if f, ok := src.(*ast.Field); ok {
		src = f.Value
	}
	if src == nil {
		return false
	}
	start, end := src.Pos(), src.End()
	for _, e := range cueerrors.Errors(err) {
		for _, p := range cueerrors.Positions(e) {
			if !p.IsValid() || p.Filename() == schemaFile {
				continue
			}
			if p.Filename() != start.Filename() || p.Compare(start) < 0 || p.Compare(end) > 0 {
				return true
			}
		}
	}
	return false
}

// errPos is the first position of err in the user's files, else pos(path).
func (c *checker) errPos(path cue.Path, err error) token.Pos {
	for _, e := range cueerrors.Errors(err) {
		for _, p := range cueerrors.Positions(e) {
			if p.IsValid() && p.Filename() != schemaFile {
				return p
			}
		}
	}
	return c.pos(path)
}

// cueMessage is CUE's message for err without the summary line of a
// disjunction ("3 errors in empty disjunction:").
func cueMessage(err error) string {
	list := cueerrors.Errors(err)
	format, args := list[0].Msg()
	for _, e := range list {
		if f, a := e.Msg(); !strings.Contains(f, "empty disjunction") {
			format, args = f, a
			break
		}
	}
	msg := fmt.Sprintf(format, args...)
	if msg == "field not allowed" {
		// The schema's own closedness is checked by the walk, so this
		// comes from a definition in the fleet's files.
		msg += " by a closed definition in the fleet (end it with \"...\" or use a hidden field such as _base)"
	}
	return msg
}

// show renders a value the way it would be written, on one short line.
func show(v cue.Value) string {
	s := strings.Join(strings.Fields(fmt.Sprint(v)), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// attrString returns the first argument of the attribute @key(...) of v.
func attrString(v cue.Value, key string) (string, bool) {
	a := v.Attribute(key)
	if a.Err() != nil {
		return "", false
	}
	s, err := a.String(0)
	return s, err == nil
}

// fieldNames lists the regular fields a schema struct declares, sorted.
func fieldNames(schema cue.Value) []string {
	var names []string
	it, err := schema.Fields(cue.Optional(true))
	if err != nil {
		return nil
	}
	for it.Next() {
		names = append(names, it.Selector().Unquoted())
	}
	slices.Sort(names)
	return names
}

// hasDefault reports whether a schema field's expression marks a default
// (*value).
func hasDefault(schema cue.Value) bool {
	found := false
	inspect(schema.Source(), func(n ast.Node) {
		if u, ok := n.(*ast.UnaryExpr); ok && u.Op == token.MUL {
			found = true
		}
	})
	return found
}

// refersElsewhere reports whether a field's expression refers to other
// values (a reference, selection, call or interpolation).
func refersElsewhere(src ast.Node) bool {
	if f, ok := src.(*ast.Field); ok {
		src = f.Value
	}
	found := false
	inspect(src, func(n ast.Node) {
		switch x := n.(type) {
		case *ast.Interpolation, *ast.SelectorExpr, *ast.IndexExpr, *ast.CallExpr:
			found = true
		case *ast.Ident:
			found = found || !predeclared(x.Name)
		}
	})
	return found
}

// predeclared reports whether name is one of CUE's predeclared types.
func predeclared(name string) bool {
	switch name {
	case "_", "string", "bytes", "int", "float", "number", "bool", "null":
		return true
	}
	return false
}

// inspect calls f for every node under n (n may be nil).
func inspect(n ast.Node, f func(ast.Node)) {
	if n == nil {
		return
	}
	ast.Walk(n, func(n ast.Node) bool { f(n); return true }, nil)
}
