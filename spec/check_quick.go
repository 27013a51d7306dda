package spec

import "cuelang.org/go/cue"

// The quick path: most apps and nodes have no error at all. CUE then has
// checked their field names too (closedness errors are held back only when
// other errors exist), so the checker need not walk their fields: it runs
// the @check rules of their schema, found once per load.

// ruleSet is the paths, relative to a schema struct, of the fields below it
// that carry a @check rule. ok is false when the struct holds a map of
// structs (the fleet's apps, say), whose rules cannot be listed statically.
type ruleSet struct {
	paths []cue.Path
	ok    bool
}

// quick checks v at once if it has no error, and reports whether it did.
func (c *checker) quick(v, schema cue.Value) bool {
	rules := c.rulesOf(schema)
	if !rules.ok || v.Validate(cue.Concrete(true)) != nil {
		return false
	}
	for _, p := range rules.paths {
		if f := v.LookupPath(p); f.Exists() {
			c.runCheck(f)
		}
	}
	c.runCheck(v)
	return true
}

// rulesOf returns the rules below schema, computed once per schema struct.
func (c *checker) rulesOf(schema cue.Value) ruleSet {
	key := schema.Path().String()
	if r, ok := c.rules[key]; ok {
		return r
	}
	if c.rules == nil {
		c.rules = make(map[string]ruleSet)
	}
	var r ruleSet
	r.ok = collectRules(schema, nil, &r.paths)
	c.rules[key] = r
	return r
}

// collectRules appends the paths of the fields below schema with a @check
// rule, each prefixed with prefix. It reports false when schema or a struct
// below it has a pattern of structs.
func collectRules(schema cue.Value, prefix []cue.Selector, out *[]cue.Path) bool {
	if p := schema.LookupPath(cue.MakePath(cue.AnyString)); p.Exists() && p.IncompleteKind()&cue.StructKind != 0 {
		return false
	}
	it, err := schema.Fields(cue.Optional(true))
	if err != nil {
		return true // not a struct (a disjunction of forms, say)
	}
	for it.Next() {
		path := append(prefix[:len(prefix):len(prefix)], cue.Str(it.Selector().Unquoted()))
		if _, ok := attrString(it.Value(), "check"); ok {
			*out = append(*out, cue.MakePath(path...))
		}
		if it.Value().IncompleteKind()&cue.StructKind != 0 && !collectRules(it.Value(), path, out) {
			return false
		}
	}
	return true
}
