package spec

import (
	"fmt"
	"slices"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/format"
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
	user     cue.Value          // the fleet as written: positions and "got" values
	metric   cue.Value          // the schema's #Metric, for health.metrics (check_metrics.go)
	stage    cue.Value          // the schema's #Stage, for rollout.stages (check_stages.go)
	declared map[string]Node    // the declared inventory, nil if it does not decode
	rules    map[string]ruleSet // by schema path (check_quick.go)
	errs     errorList
	deferred []deferred // see deferError
}

// deferred is a problem recorded only if its app has no other.
type deferred struct {
	path cue.Path
	pos  token.Pos
	msg  string
}

// walk checks v, whose schema is schema (a zero Value when the schema says
// nothing more about it).
func (c *checker) walk(v, schema cue.Value) {
	if schema.Exists() && schema.IncompleteKind()&cue.StructKind != 0 {
		if c.quick(v, schema) {
			return
		}
		if it, err := v.Fields(); err == nil {
			c.walkStruct(v, it, schema)
			return
		}
	}
	if c.user.LookupPath(v.Path()).Kind() == cue.ListKind && structList(schema) {
		c.runCheck(v) // its check walks each element (checkMetrics)
		return
	}
	c.leaf(v, schema)
}

// structList reports whether schema is a list of structs, such as
// [...#Metric].
func structList(schema cue.Value) bool {
	if !schema.Exists() || schema.IncompleteKind() != cue.ListKind {
		return false
	}
	e := schema.LookupPath(cue.MakePath(cue.AnyIndex))
	return e.Exists() && e.IncompleteKind() == cue.StructKind
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
// schema: the field itself (optional when it has a default), or the
// pattern that applies to any name.
func fieldSchema(schema cue.Value, sel cue.Selector) cue.Value {
	if f := schema.LookupPath(cue.MakePath(sel)); f.Exists() {
		return f
	}
	if sel.IsString() {
		if f := schema.LookupPath(cue.MakePath(cue.Str(sel.Unquoted()).Optional())); f.Exists() {
			return f
		}
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
		// Usually the field it refers to is reported instead; if not
		// (a cycle, a hidden field), this field is.
		c.deferError(u, path, "%s: got %s, not a valid value (%s), want %s", path, showSource(u), cueMessage(err), wantOr(v, schema))
		return
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

// incomplete records a field that has no concrete value: missing, or
// written but left incomplete (a type, a bound, a reference to one). Such a
// field never takes a default: only a field the user did not write does
// (defaults.go). A field that refers to another field is reported only when
// nothing else is reported in its app: usually the field it refers to is.
func (c *checker) incomplete(v, u, schema cue.Value, err error) {
	path := v.Path()
	want := wantOr(v, schema)
	switch {
	case !u.Exists():
		c.errs.add(c.pos(path), "%s: missing, want %s", path, want)
	case refersElsewhere(u.Source()):
		c.deferError(u, path, "%s: got %s, not a concrete value (%s), want %s%s",
			path, showSource(u), cueMessage(err), want, fix(schema))
	case typeOnly(u.Source()) && !hasDefault(schema):
		c.errs.add(c.pos(path), "%s: missing, want %s", path, want)
	default:
		c.errs.add(c.valuePos(path), "%s: got %s, not a concrete value, want %s%s", path, showSource(u), want, fix(schema))
	}
}

// fix says how to mend a field written without a concrete value.
func fix(schema cue.Value) string {
	if hasDefault(schema) {
		return ": give it a value, or remove it to take the default"
	}
	return ": give it a value"
}

// wantOr is what a field expects (wantOf), or "a concrete value".
func wantOr(v, schema cue.Value) string {
	if want, ok := wantOf(v, schema); ok {
		return want
	}
	return "a concrete value"
}

// deferError records a problem of a field whose value comes from elsewhere,
// reported only when nothing else is in its app (or node): see flush.
// A field that refers only to hidden fields (_n, a cycle of _a and _b) is
// reported at once: nothing else reports a hidden field.
func (c *checker) deferError(u cue.Value, path cue.Path, format string, args ...any) {
	if refersToHiddenOnly(u.Source()) {
		c.errs.add(c.valuePos(path), format, args...)
		return
	}
	c.deferred = append(c.deferred, deferred{path: path, pos: c.valuePos(path), msg: fmt.Sprintf(format, args...)})
}

// flush records the deferred problems of apps and nodes without another.
func (c *checker) flush() {
	owners := map[string]bool{}
	for _, e := range c.errs.list {
		owners[ownerOf(e.Message)] = true
	}
	for _, d := range c.deferred {
		if !owners[ownerOf(d.msg)] {
			c.errs.add(d.pos, "%s", d.msg)
		}
	}
}

// ownerOf is the app or node a message is about: "apps.web" of
// "apps.web.rollout.batchSize: ...".
func ownerOf(msg string) string {
	path, _, _ := strings.Cut(msg, ": ")
	sels := cue.ParsePath(path).Selectors()
	if len(sels) < 2 {
		return path
	}
	return cue.MakePath(sels[:2]...).String()
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

// cueMessage is CUE's message for err without the summary line of a
// disjunction ("3 errors in empty disjunction:").
func cueMessage(err error) string {
	list := cueerrors.Errors(err)
	if len(list) == 0 {
		return err.Error()
	}
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
	s := []rune(strings.Join(strings.Fields(fmt.Sprint(v)), " "))
	if len(s) > 60 {
		return string(s[:57]) + "..."
	}
	return string(s)
}

// showSource renders the expression the user wrote for u (a reference
// such as _n or apps.web.version), or its value when there is none.
func showSource(u cue.Value) string {
	src := u.Source()
	if f, ok := src.(*ast.Field); ok {
		src = f.Value
	}
	if src == nil {
		return show(u)
	}
	b, err := format.Node(src)
	if err != nil {
		return show(u)
	}
	s := []rune(strings.Join(strings.Fields(string(b)), " "))
	if len(s) > 60 {
		return string(s[:57]) + "..."
	}
	return string(s)
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
