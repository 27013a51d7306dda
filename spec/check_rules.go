package spec

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"cuelang.org/go/cue"
	"golang.org/x/mod/semver"
)

// runCheck runs the Go check named by v's @check attribute, if any.
func (c *checker) runCheck(v cue.Value) {
	rule, ok := attrString(v, "check")
	if !ok {
		return
	}
	switch rule {
	case "semver":
		c.checkString(v, validVersion)
	case "duration":
		c.checkString(v, validDuration)
	case "positive":
		c.checkString(v, positiveDuration)
	case "health":
		c.checkHealth(v)
	case "targets":
		c.checkTargets(v)
	case "exec":
		c.checkExec(v)
	case "url":
		c.checkString(v, fetchableURL)
	case "pins":
		c.checkPins(v)
	case "windows":
		c.checkWindows(v)
	case "percent":
		if v.Kind() == cue.StringKind {
			c.checkString(v, validPercent)
		}
	case "freeze":
		c.checkFreeze(v)
	case "prometheus":
		c.checkString(v, prometheusURL)
	case "metrics":
		c.checkMetrics(v)
	case "stages":
		c.checkStages(v)
	case "stagenodes":
		c.checkStageNodes(v)
	default:
		panic(fmt.Sprintf("spec: schema names unknown check %q", rule))
	}
}

// checkString records "got X, want Y" when the string v fails ok.
func (c *checker) checkString(v cue.Value, ok func(string) bool) {
	s, err := v.String()
	if err != nil || ok(s) {
		return
	}
	want, _ := attrString(v, "want")
	c.errs.add(c.valuePos(v.Path()), "%s: got %q, want %s", v.Path(), s, want)
}

// validVersion accepts MAJOR.MINOR.PATCH with an optional leading "v",
// pre-release and build metadata (semver 2.0.0).
func validVersion(s string) bool {
	v := "v" + strings.TrimPrefix(s, "v")
	return semver.IsValid(v) && semver.Canonical(v) == strings.TrimSuffix(v, semver.Build(v))
}

// positiveDuration accepts a Go duration string above zero: a timeout of
// 0 would expire the moment it starts.
func positiveDuration(s string) bool {
	d, err := time.ParseDuration(s)
	return err == nil && d > 0
}

// fetchableURL accepts what an agent can fetch (release's parseSource):
// http(s) with a host, file:// with no host (or localhost) and a path, and
// a URL that parses; the schema's pattern has checked the scheme.
func fetchableURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "http", "https":
		return u.Host != ""
	case "file":
		return (u.Host == "" || u.Host == "localhost") && u.Path != ""
	}
	return false
}

// validDuration accepts a non-negative Go duration string.
func validDuration(s string) bool {
	d, err := time.ParseDuration(s)
	return err == nil && d >= 0
}

// checkPins requires each pin to name a valid app and a semantic version.
func (c *checker) checkPins(v cue.Value) {
	it, err := v.Fields()
	if err != nil {
		return
	}
	for it.Next() {
		app := it.Selector().Unquoted()
		if err := CheckName("app", app); err != nil {
			c.errs.add(c.labelPos(it.Value().Path()), "%s: %v", it.Value().Path(), err)
			continue
		}
		if s, err := it.Value().String(); err == nil && !validVersion(s) {
			c.errs.add(c.valuePos(it.Value().Path()), "%s: got %q, want a semantic version such as \"1.2.3\" that the node stays on", it.Value().Path(), s)
		}
	}
}

// checkHealth requires exactly one of http, tcp and exec, and a
// prometheus server for metrics.
func (c *checker) checkHealth(v cue.Value) {
	if m := v.LookupPath(cue.MakePath(cue.Str("metrics"))); m.Exists() && !v.LookupPath(cue.MakePath(cue.Str("prometheus"))).Exists() {
		c.errs.add(c.valuePos(m.Path()), "%s: metric gates without %s.prometheus, want the URL of the Prometheus server their queries go to, such as \"http://prometheus.example.com:9090\"", m.Path(), v.Path())
	}
	var set []string
	for _, k := range []string{"http", "tcp", "exec"} {
		// The schema's fields are optional: one exists only if written.
		if v.LookupPath(cue.MakePath(cue.Str(k))).Exists() {
			set = append(set, k)
		}
	}
	switch len(set) {
	case 1:
	case 0:
		c.errs.add(c.pos(v.Path()), "%s: missing, want exactly one of http, tcp or exec", v.Path())
	default:
		c.errs.add(c.valuePos(v.Path()), "%s: got %s, want exactly one of http, tcp or exec", v.Path(), strings.Join(set, " and "))
	}
}

// checkTargets requires every name of a list to be a valid node name, and
// a label selector to match at least one declared node when the fleet
// declares nodes. A list may name nodes not declared yet: agents announce
// themselves, and the planner reports them.
func (c *checker) checkTargets(v cue.Value) {
	if c.abstractTargets(v) {
		return
	}
	switch v.Kind() {
	case cue.ListKind:
		c.checkTargetList(v)
		return
	case cue.StructKind:
	default:
		return
	}
	if len(c.declared) == 0 {
		return
	}
	var t Targets
	if err := v.Decode(&t.Selector); err != nil {
		return
	}
	for name, n := range c.declared {
		if t.Match(name, n.Labels) {
			return
		}
	}
	c.errs.add(c.valuePos(v.Path()), "%s: selector %s matches no declared node, want labels of at least one of %s",
		v.Path(), formatSelector(t.Selector), someNames(slices.Sorted(maps.Keys(c.declared))))
}

// someNames lists at most ten names, then how many more there are.
func someNames(names []string) string {
	if len(names) > 10 {
		return fmt.Sprintf("%s and %d more", strings.Join(names[:10], ", "), len(names)-10)
	}
	return strings.Join(names, ", ")
}

// abstractTargets records targets written as a type rather than a value:
// an open list ([...string], which would target no node) or a selector that
// is only a pattern ({[string]: string}, which would target every node).
func (c *checker) abstractTargets(v cue.Value) bool {
	u := c.user.LookupPath(v.Path())
	var what string
	switch u.IncompleteKind() {
	case cue.ListKind:
		if _, err := u.Len().Int64(); err != nil {
			what = "an open list, which would target no node: list the names"
		}
	case cue.StructKind:
		it, err := u.Fields()
		if err == nil && !it.Next() && u.LookupPath(cue.MakePath(cue.AnyString)).Exists() {
			what = "a selector with only a pattern, which would target every node: write the labels, or \"all\""
		}
	}
	if what == "" {
		return false
	}
	c.errs.add(c.valuePos(v.Path()), "%s: got %s, a type, not a value: %s", v.Path(), showSource(u), what)
	return true
}

// checkTargetList checks each name of a list of targets.
func (c *checker) checkTargetList(v cue.Value) {
	if n, err := v.Len().Int64(); err == nil && n > MaxNodes {
		c.errs.add(c.valuePos(v.Path()), "%s: %d names, more than %d (docs/spec.md): use a label selector", v.Path(), n, MaxNodes)
		return
	}
	it, err := v.List()
	if err != nil {
		return
	}
	for it.Next() {
		s, err := it.Value().String()
		if err != nil {
			continue // the schema reports a value that is not a string
		}
		if err := CheckName("node", s); err != nil {
			p := userPos(c.user.LookupPath(it.Value().Path()))
			if !p.IsValid() || p.Filename() == schemaFile {
				p = c.valuePos(v.Path())
			}
			c.errs.add(p, "%s: %v", it.Value().Path(), err)
		}
	}
}

// formatSelector writes a selector as CUE: {region: "eu", tier: "web"}.
func formatSelector(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, fmt.Sprintf("%s: %q", k, sel[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// closest returns the name in names nearest to s (same letters ignoring
// case, or at most two edits away), or "" when none is close.
func closest(s string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if strings.EqualFold(s, n) {
			return n
		}
		if d := editDistance(s, n); d < bestDist && d < len(n)/2 {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
