package spec

import (
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"
)

// This file finds where in the user's files a problem is, and whether a
// problem is only the echo of another one.

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

// hasDefault reports whether a schema field is optional, which in the
// schema means it has a default (defaults.go).
func hasDefault(schema cue.Value) bool {
	f, ok := schema.Source().(*ast.Field)
	return ok && f.Constraint == token.OPTION
}

// typeOnly reports whether a field's expression is only a type (string,
// int): the idiom of a template asking each app for a value, reported as
// "missing" when the app gives none.
func typeOnly(src ast.Node) bool {
	if f, ok := src.(*ast.Field); ok {
		src = f.Value
	}
	id, ok := src.(*ast.Ident)
	return ok && predeclared(id.Name)
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

// refersToHiddenOnly reports whether every reference in a field's
// expression starts at a hidden field (_n, _a.b).
func refersToHiddenOnly(src ast.Node) bool {
	if f, ok := src.(*ast.Field); ok {
		src = f.Value
	}
	if src == nil {
		return false
	}
	refs, hidden := 0, 0
	ast.Walk(src, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.SelectorExpr:
			ast.Walk(x.X, func(n ast.Node) bool { // only the root counts
				if id, ok := n.(*ast.Ident); ok && !predeclared(id.Name) {
					refs++
					if strings.HasPrefix(id.Name, "_") {
						hidden++
					}
					return false
				}
				return true
			}, nil)
			return false
		case *ast.Ident:
			if !predeclared(x.Name) {
				refs++
				if strings.HasPrefix(x.Name, "_") {
					hidden++
				}
			}
		}
		return true
	}, nil)
	return refs > 0 && refs == hidden
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
