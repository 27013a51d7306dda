package spec

import (
	"encoding/json"
	"fmt"
	"slices"

	"cuelang.org/go/cue"
)

// The fleet's top level: apps and nodes are maps that may be large (a
// comprehension can declare tens of thousands of nodes), and CUE's
// Value.Fields costs time quadratic in a struct's size. So each map is
// iterated once: names, limits, each entry's checks and, for nodes, their
// decoding all happen in that one pass.

// walkFleet checks the fleet's top-level fields, nodes first: app
// selectors are checked against the declared nodes.
func (c *checker) walkFleet(v, def cue.Value) {
	it, err := v.Fields()
	if err != nil {
		c.leaf(v, def)
		return
	}
	type field struct {
		sel cue.Selector
		v   cue.Value
	}
	var fields []field
	for it.Next() {
		fields = append(fields, field{it.Selector(), it.Value()})
	}
	slices.SortStableFunc(fields, func(a, b field) int {
		return boolInt(a.sel.Unquoted() != "nodes") - boolInt(b.sel.Unquoted() != "nodes")
	})
	for _, f := range fields {
		switch name := f.sel.Unquoted(); {
		case !def.Allows(f.sel):
			c.unknownField(f.v.Path(), f.sel, def)
		case name == "nodes":
			c.walkMap(f.v, fieldSchema(def, f.sel), "node", MaxNodes)
		case name == "apps":
			c.walkMap(f.v, fieldSchema(def, f.sel), "app", MaxApps)
		default:
			c.walk(f.v, fieldSchema(def, f.sel))
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// walkMap checks the apps or nodes map v, whose schema is a pattern of
// structs: each name (CheckName), the count (at most max), each entry. A
// node without problems is decoded into the declared inventory.
func (c *checker) walkMap(v, schema cue.Value, kind string, max int) {
	it, err := v.Fields()
	if err != nil {
		c.leaf(v, schema)
		return
	}
	elem := schema.LookupPath(cue.MakePath(cue.AnyString))
	if kind == "node" {
		c.declared = map[string]Node{}
	}
	n := 0
	for it.Next() {
		if n++; n > max {
			c.errs.add(c.labelPos(it.Value().Path()), "%s: more than %d %ss, the limit of one fleet (docs/spec.md): split the fleet repo",
				v.Path(), max, kind)
			return
		}
		name := it.Selector().Unquoted()
		if err := CheckName(kind, name); err != nil {
			c.errs.add(c.labelPos(it.Value().Path()), "%s: %v", it.Value().Path(), err)
			continue
		}
		before := len(c.errs.list)
		c.walk(it.Value(), elem)
		if kind == "node" && len(c.errs.list) == before {
			c.decodeNode(name, it.Value())
		}
	}
}

// decodeNode adds a valid node to the declared inventory.
func (c *checker) decodeNode(name string, v cue.Value) {
	b, err := v.MarshalJSON()
	var n Node
	if err == nil {
		err = json.Unmarshal(b, &n)
	}
	if err != nil {
		c.errs.add(c.pos(v.Path()), "%s: %v", v.Path(), fmt.Errorf("decode: %w", err))
		return
	}
	c.declared[name] = n
}
