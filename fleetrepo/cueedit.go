package fleetrepo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// CUEExpr is a CUE expression given as source text, for SetField values
// that are not plain scalars (e.g. a value copied from an older commit).
type CUEExpr string

// span is a byte range of a source file.
type span struct{ start, end int }

// SetField returns src with the value of apps: <app>: <fieldPath> replaced
// by value, changing only the bytes of that value: comments and formatting
// survive. fieldPath is dotted ("version", "paused", "rollout.batchSize").
// Every form CUE allows is found: `apps: web: version: "1"`, `apps: web: {
// version: "1" }`, `apps: { web: { ... } }`, quoted labels, `#App & {...}`.
// When the field is declared more than once, every declaration is changed.
// When it is missing, a line is added before the closing brace of the
// deepest enclosing struct written with braces. value is a string, bool or
// number (written as JSON, which CUE reads) or a CUEExpr.
func SetField(src []byte, app, fieldPath string, value any) ([]byte, error) {
	lit, err := cueLiteral(value)
	if err != nil {
		return nil, fmt.Errorf("set apps.%s.%s: %w", app, fieldPath, err)
	}
	f, err := parser.ParseFile("spec.cue", src, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("set apps.%s.%s: parse: %w", app, fieldPath, err)
	}
	labels := strings.Split(fieldPath, ".")
	if slices.Contains(labels, "") || !utf8.ValidString(fieldPath) {
		return nil, fmt.Errorf("set apps.%s.%s: field path %q has an empty label or is not UTF-8: want labels joined by single dots, such as \"rollout.batchSize\"", app, fieldPath, fieldPath)
	}
	path := append([]string{"apps", app}, labels...)
	found := findFields(f.Decls, path)
	if len(found) > 0 {
		return spliceValues(src, found, lit), nil
	}
	return insertField(src, f.Decls, path, lit)
}

func cueLiteral(v any) (string, error) {
	switch v := v.(type) {
	case CUEExpr:
		return string(v), nil
	case string, bool, int, int64, uint64, float64:
		b, err := json.Marshal(v)
		return string(b), err
	}
	return "", fmt.Errorf("unsupported value %v (%T): want a string, bool, number or CUEExpr", v, v)
}

// spliceValues replaces the value of each field by lit, last first.
func spliceValues(src []byte, fields []*ast.Field, lit string) []byte {
	spans := make([]span, 0, len(fields))
	for _, fl := range fields {
		spans = append(spans, span{fl.Value.Pos().Offset(), fl.Value.End().Offset()})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start > spans[j].start })
	out := slices.Clone(src)
	for _, s := range spans {
		out = slices.Concat(out[:s.start], []byte(lit), out[s.end:])
	}
	return out
}

// findFields returns every field at path among decls, following struct
// literals, conjunctions (#App & {...}) and the `a: b: c:` shorthand.
func findFields(decls []ast.Decl, path []string) []*ast.Field {
	var out []*ast.Field
	for _, d := range decls {
		fl, ok := d.(*ast.Field)
		if !ok || labelName(fl.Label) != path[0] {
			continue
		}
		if len(path) == 1 {
			out = append(out, fl)
			continue
		}
		for _, s := range structsOf(fl.Value) {
			out = append(out, findFields(s.Elts, path[1:])...)
		}
	}
	return out
}

// structsOf returns the struct literals a value is made of.
func structsOf(e ast.Expr) []*ast.StructLit {
	switch e := e.(type) {
	case *ast.StructLit:
		return []*ast.StructLit{e}
	case *ast.BinaryExpr:
		return append(structsOf(e.X), structsOf(e.Y)...)
	case *ast.ParenExpr:
		return structsOf(e.X)
	}
	return nil
}

func labelName(l ast.Label) string {
	name, _, err := ast.LabelName(l)
	if err != nil {
		return ""
	}
	return name
}

// insertField adds `rest: lit` in the deepest braced struct on path.
func insertField(src []byte, decls []ast.Decl, path []string, lit string) ([]byte, error) {
	s, depth := deepestStruct(decls, path, nil, 0)
	if s == nil || depth < 2 {
		return nil, fmt.Errorf("set %s: %w (no braced struct for apps.%s to add it to)", strings.Join(path, "."), ErrAppNotFound, path[1])
	}
	rest := path[depth:]
	at := lineStart(src, s.Rbrace.Offset())
	indent := indentOf(src, s, at)
	line := fmt.Sprintf("%s%s: %s\n", indent, strings.Join(quoteLabels(rest), ": "), lit)
	if !onlySpace(src[at:s.Rbrace.Offset()]) {
		// `{ a: 1 }` on one line: put the field on its own line before the brace.
		at = s.Rbrace.Offset()
		line = "\n" + line + string(leadingSpace(src, lineStart(src, at)))
	}
	return slices.Concat(src[:at], []byte(line), src[at:]), nil
}

// deepestStruct returns the braced struct literal that matches the longest
// prefix of path, and how many labels it matched.
func deepestStruct(decls []ast.Decl, path []string, best *ast.StructLit, depth int) (*ast.StructLit, int) {
	bestDepth := depth
	for _, d := range decls {
		fl, ok := d.(*ast.Field)
		if !ok || len(path) == 0 || labelName(fl.Label) != path[0] {
			continue
		}
		for _, s := range structsOf(fl.Value) {
			cand, cd := deepestStruct(s.Elts, path[1:], nil, depth+1)
			if cand == nil && s.Lbrace.IsValid() && s.Rbrace.IsValid() {
				cand, cd = s, depth+1
			}
			if cand != nil && cd > bestDepth {
				best, bestDepth = cand, cd
			}
		}
	}
	return best, bestDepth
}

func quoteLabels(labels []string) []string {
	out := make([]string, len(labels))
	for i, l := range labels {
		out[i] = l
		if !ast.IsValidIdent(l) {
			b, _ := json.Marshal(l)
			out[i] = string(b)
		}
	}
	return out
}

func lineStart(src []byte, off int) int {
	return bytes.LastIndexByte(src[:off], '\n') + 1
}

func onlySpace(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

func leadingSpace(src []byte, start int) []byte {
	end := start
	for end < len(src) && (src[end] == ' ' || src[end] == '\t') {
		end++
	}
	return src[start:end]
}

// indentOf is the indentation of the struct's last field, or the closing
// brace's plus a tab.
func indentOf(src []byte, s *ast.StructLit, braceLine int) string {
	for i := len(s.Elts) - 1; i >= 0; i-- {
		if p := s.Elts[i].Pos(); p.IsValid() {
			return string(leadingSpace(src, lineStart(src, p.Offset())))
		}
	}
	return string(leadingSpace(src, braceLine)) + "\t"
}

// appLeaves returns the source text of every non-struct field under
// apps: <app>, by dotted path ("version", "rollout.batchSize").
func appLeaves(src []byte, app string) (map[string]string, error) {
	f, err := parser.ParseFile("spec.cue", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, fl := range findFields(f.Decls, []string{"apps", app}) {
		collectLeaves(src, fl.Value, "", out)
	}
	return out, nil
}

func collectLeaves(src []byte, v ast.Expr, prefix string, out map[string]string) {
	structs := structsOf(v)
	if len(structs) == 0 {
		out[strings.TrimSuffix(prefix, ".")] = string(src[v.Pos().Offset():v.End().Offset()])
		return
	}
	for _, s := range structs {
		for _, d := range s.Elts {
			if fl, ok := d.(*ast.Field); ok && labelName(fl.Label) != "" {
				collectLeaves(src, fl.Value, prefix+labelName(fl.Label)+".", out)
			}
		}
	}
}

// appSpans returns the byte ranges of the fields that declare apps: <app>.
func appSpans(src []byte, app string) ([]span, error) {
	f, err := parser.ParseFile("spec.cue", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var out []span
	for _, fl := range findFields(f.Decls, []string{"apps", app}) {
		out = append(out, span{fl.Pos().Offset(), fl.End().Offset()})
	}
	return out, nil
}

// FindAppFile returns the path of the .cue file in tree that declares the
// app's version (or, failing that, the app at all); ErrAppNotFound if none.
func FindAppFile(tree *object.Tree, app string) (string, error) {
	var withApp string
	err := tree.Files().ForEach(func(f *object.File) error {
		if !strings.HasSuffix(f.Name, ".cue") || strings.HasPrefix(f.Name, "cue.mod/") {
			return nil
		}
		src, err := fileBytes(f)
		if err != nil {
			return err
		}
		leaves, err := appLeaves(src, app)
		if err != nil {
			return nil // a file that does not parse declares nothing we can edit
		}
		if _, ok := leaves["version"]; ok {
			withApp = f.Name
			return io.EOF
		}
		if len(leaves) > 0 && withApp == "" {
			withApp = f.Name
		}
		return nil
	})
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("find the file of app %s: %w", app, err)
	}
	if withApp == "" {
		return "", fmt.Errorf("find the file of app %s: %w", app, ErrAppNotFound)
	}
	return withApp, nil
}

func fileBytes(f *object.File) ([]byte, error) {
	r, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	defer r.Close()
	return io.ReadAll(r)
}
