package spec

import (
	"net/url"
	"regexp"

	"cuelang.org/go/cue"
)

// checkMetrics checks health.metrics, a list of #Metric: each element as a
// struct of the schema (field names, values, @check rules), then what CUE
// cannot say: a bound on each, min not above max, names unique.
func (c *checker) checkMetrics(v cue.Value) {
	// By index, over the list as written: List() fails on a list with an
	// error in it, and each element is to be checked on its own.
	n, err := c.user.LookupPath(v.Path()).Len().Int64()
	if err != nil {
		return // not a list: the schema reports it
	}
	seen := map[string]bool{}
	for i := range int(n) {
		m := v.LookupPath(cue.MakePath(cue.Index(i)))
		c.walk(m, c.metric)
		c.checkBounds(m)
		name, err := m.LookupPath(cue.MakePath(cue.Str("name"))).String()
		if err != nil {
			continue
		}
		if seen[name] {
			c.errs.add(c.valuePos(m.LookupPath(cue.MakePath(cue.Str("name"))).Path()),
				"%s.name: got %q again, want a name unique among the app's metrics (it names the gate in failure reasons)", m.Path(), name)
		}
		seen[name] = true
	}
}

// checkBounds requires max, min or both, and min not above max.
func (c *checker) checkBounds(m cue.Value) {
	lo, hi := m.LookupPath(cue.MakePath(cue.Str("min"))), m.LookupPath(cue.MakePath(cue.Str("max")))
	if !lo.Exists() && !hi.Exists() {
		c.errs.add(c.pos(m.Path()), "%s: no bound, want max, min or both (the values the query may return)", m.Path())
		return
	}
	l, lerr := lo.Float64()
	h, herr := hi.Float64()
	if lerr == nil && herr == nil && l > h {
		c.errs.add(c.valuePos(lo.Path()), "%s: min %v above max %v, want min <= max: no value could pass", m.Path(), l, h)
	}
}

// prometheusURL accepts an http(s) URL with a host and no query or
// fragment (the API's paths are added to it); ${NAME} node variables may
// stand for parts of it, so each is read as a plain word here.
func prometheusURL(s string) bool {
	u, err := url.Parse(varRef.ReplaceAllString(s, "v"))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == ""
}

// varRef is a ${NAME} reference to a node variable (the agent substitutes
// them: agent/vars.go).
var varRef = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)
