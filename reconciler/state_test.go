package reconciler

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// TestEveryEventTypeIsKnown: every Event* constant of state.go is a type
// the stores' readers accept. node_held was missing: a node held
// mid-rollout was recorded, skipped as garbage by every reader and
// recorded again, for ever.
func TestEveryEventTypeIsKnown(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "state.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Event") || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok {
			return true
		}
		typ, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if !KnownEventType(typ) {
			t.Errorf("%s = %q is no known event type: readers skip it as garbage", vs.Names[0].Name, typ)
		}
		return true
	})
	if n < 15 {
		t.Fatalf("found %d event constants in state.go, want at least 15", n)
	}
}
