package spec

import (
	"strconv"
	"strings"
)

// Match reports whether the targets select the node called name with the
// given labels: "all" selects every node, a list selects the nodes it names,
// and a selector selects the nodes that carry every one of its labels (an
// empty selector selects every node). The zero Targets means "all", as in
// its JSON form.
func (t Targets) Match(name string, labels map[string]string) bool {
	switch {
	case t.Names != nil:
		for _, n := range t.Names {
			if n == name {
				return true
			}
		}
		return false
	case t.Selector != nil:
		for k, v := range t.Selector {
			if got, ok := labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	default:
		return true
	}
}

// Matcher returns Match for many nodes: a list of names is put in a set
// once, so matching an inventory of N nodes against a list of L names costs
// N+L, not N×L (100,000 names against 100,000 nodes planned in seconds).
func (t Targets) Matcher() func(name string, labels map[string]string) bool {
	if t.Names == nil {
		return t.Match
	}
	set := make(map[string]bool, len(t.Names))
	for _, n := range t.Names {
		set[n] = true
	}
	return func(name string, _ map[string]string) bool { return set[name] }
}

// Text writes the targets as they are written in CUE, for people: "all",
// ["a", "b"] or {region: "eu"}.
func (t Targets) Text() string {
	switch {
	case t.Names != nil:
		quoted := make([]string, len(t.Names))
		for i, n := range t.Names {
			quoted[i] = strconv.Quote(n)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	case t.Selector != nil:
		return formatSelector(t.Selector)
	default:
		return `"all"`
	}
}
