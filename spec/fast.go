package spec

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"time"

	"cuelang.org/go/cue"
)

// The fast path. Most loads are of a valid fleet, and unifying every app
// with the schema in CUE costs more than evaluating the files themselves.
// So the user's files are evaluated alone and exported as JSON, as "cue
// export" does, and the JSON is checked in Go against the same rules as
// schema.cue and check_rules.go. Only when this finds anything at all (or
// the files do not export: an incomplete value, a cycle) does LoadFiles take
// the full path, which unifies with the schema and reports every problem
// with its position. The fast path never reports: it accepts or defers.
// TestFastPathAgreesWithSchema keeps the two in step.

var (
	reURL    = regexp.MustCompile(`^(https?|file)://.`) // schema.cue #Artifact
	reSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reHTTP   = regexp.MustCompile(`^https?://.`)
	reTCP    = regexp.MustCompile(`^.+:.+$`)

	reMetricName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`) // #Metric
	reQuery      = regexp.MustCompile(`[^ \t\n]`)
)

// fastLoad returns the fleet when the user's files, evaluated alone, are
// valid by every rule; ok is false when the full path must decide. A fleet
// over the limits on apps and nodes is refused here (err), without the full
// path's walk, whose cost grows faster than the count.
func fastLoad(user cue.Value) (f *Fleet, ok bool, err error) {
	b, jerr := user.MarshalJSON()
	if jerr != nil {
		return nil, false, nil
	}
	var top map[string]json.RawMessage
	if !jsonObject(b, &top, "apps", "nodes") {
		return nil, false, nil
	}
	var apps, nodes map[string]json.RawMessage
	if raw, set := top["apps"]; set && !jsonObject(raw, &apps) {
		return nil, false, nil
	}
	if raw, set := top["nodes"]; set && !jsonObject(raw, &nodes) {
		return nil, false, nil
	}
	if err := overLimit(user, len(apps), len(nodes)); err != nil {
		return nil, false, err
	}
	// As the full path, where the schema always declares nodes.
	f = &Fleet{Apps: make(map[string]App, len(apps)), Nodes: make(map[string]Node, len(nodes))}
	for name, raw := range nodes {
		n, ok := fastNode(name, raw)
		if !ok {
			return nil, false, nil
		}
		f.Nodes[name] = n
	}
	for name, raw := range apps {
		if !fastApp(name, raw, f.Nodes) {
			return nil, false, nil
		}
		var app App
		if json.Unmarshal(raw, &app) != nil {
			return nil, false, nil
		}
		app.Name = name
		f.Apps[name] = app
	}
	return f, true, nil
}

// jsonObject decodes a JSON object into m, and reports whether it is one with
// only the given keys (any key when none are given).
func jsonObject(raw json.RawMessage, m *map[string]json.RawMessage, keys ...string) bool {
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, m) != nil {
		return false
	}
	if len(keys) == 0 {
		return true
	}
	for k := range *m {
		if !contains(keys, k) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fastNode(name string, raw json.RawMessage) (Node, bool) {
	var fields map[string]json.RawMessage
	if CheckName("node", name) != nil || !jsonObject(raw, &fields, "labels", "vars", "hold", "pin") {
		return Node{}, false
	}
	for _, k := range []string{"labels", "vars", "pin"} {
		if v, set := fields[k]; set && !stringMap(v) {
			return Node{}, false
		}
	}
	if h, set := fields["hold"]; set && !boolean(h) {
		return Node{}, false
	}
	if p, set := fields["pin"]; set && !fastPins(p) {
		return Node{}, false
	}
	n := Node{Labels: map[string]string{}, Vars: map[string]string{}} // as the schema declares them
	return n, json.Unmarshal(raw, &n) == nil
}

// fastPins: every pin names a valid app and a semantic version (checkPins).
func fastPins(raw json.RawMessage) bool {
	var pins map[string]string
	if json.Unmarshal(raw, &pins) != nil {
		return false
	}
	for app, v := range pins {
		if CheckName("app", app) != nil || !validVersion(v) {
			return false
		}
	}
	return true
}

// stringMap reports whether raw is an object of strings.
func stringMap(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	if !jsonObject(raw, &m) {
		return false
	}
	for _, v := range m {
		if _, ok := str(v); !ok {
			return false
		}
	}
	return true
}

func fastApp(name string, raw json.RawMessage, declared map[string]Node) bool {
	var a map[string]json.RawMessage
	if CheckName("app", name) != nil || !jsonObject(raw, &a, "version", "artifact", "rollout", "health", "nodes", "paused") {
		return false
	}
	if v, ok := str(a["version"]); !ok || !validVersion(v) {
		return false
	}
	if p, set := a["paused"]; set && !boolean(p) {
		return false
	}
	return fastArtifact(a["artifact"]) && fastRollout(a["rollout"]) && fastHealth(a["health"]) && fastTargets(a["nodes"], declared)
}

// artifactURL is #Artifact's pattern and its @check(url).
func artifactURL(s string) bool { return reURL.MatchString(s) && fetchableURL(s) }

func fastArtifact(raw json.RawMessage) bool {
	var a map[string]json.RawMessage
	if !jsonObject(raw, &a, "url", "sha256", "signature") {
		return false
	}
	if u, ok := str(a["url"]); !ok || !artifactURL(u) {
		return false
	}
	return optString(a, "sha256", reSHA256.MatchString) && optString(a, "signature", artifactURL)
}

func fastRollout(raw json.RawMessage) bool {
	if raw == nil {
		return true
	}
	var r map[string]json.RawMessage
	if !jsonObject(raw, &r, "strategy", "batchSize", "batchDelay", "nodeTimeout", "rollbackOnFail", "onUnreachable", "canary", "windows", "freeze", "maxFailures", "approve", "stages") {
		return false
	}
	if !fastWindows(r["windows"]) || !fastFreeze(r["freeze"]) || !fastStages(r["stages"]) {
		return false
	}
	if _, set := r["maxFailures"]; set && !optInt(r, "maxFailures", 0) && !optString(r, "maxFailures", validPercent) {
		return false
	}
	ok := optString(r, "strategy", oneOf(StrategyRolling, StrategyCanary, StrategyAllAtOnce)) &&
		optInt(r, "batchSize", 1) && optString(r, "batchDelay", validDuration) &&
		optString(r, "nodeTimeout", positiveDuration) && optBool(r, "rollbackOnFail") &&
		optString(r, "onUnreachable", oneOf(OnUnreachableSkip, OnUnreachableFail)) &&
		optString(r, "approve", oneOf(ApproveNone, ApproveAfterCanary, ApproveEachWave))
	if c, set := r["canary"]; ok && set {
		var m map[string]json.RawMessage
		ok = jsonObject(c, &m, "count", "monitor") && optInt(m, "count", 1) && optString(m, "monitor", validDuration)
	}
	return ok
}

// fastStages: absent, or a list of stages (#Stage) whose nodes are
// targets in any form; a selector need not match a declared node.
func fastStages(raw json.RawMessage) bool {
	if raw == nil {
		return true
	}
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return false
	}
	for _, e := range list {
		var m map[string]json.RawMessage
		if !jsonObject(e, &m, "nodes", "batchSize", "bake") || m["nodes"] == nil ||
			!fastTargets(m["nodes"], nil) || !optInt(m, "batchSize", 1) || !optString(m, "bake", validDuration) {
			return false
		}
	}
	return true
}

// fastWindows: absent, or a list of windows that window.go's checks accept.
func fastWindows(raw json.RawMessage) bool {
	if raw == nil {
		return true
	}
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return false
	}
	for _, e := range list {
		var m map[string]json.RawMessage
		if !jsonObject(e, &m, "days", "start", "end", "timezone") || m["days"] == nil ||
			!optString(m, "start", all) || !optString(m, "end", all) || !optString(m, "timezone", all) {
			return false
		}
		var days []json.RawMessage
		if m["days"][0] != '[' || json.Unmarshal(m["days"], &days) != nil {
			return false
		}
		for _, d := range days {
			if s, ok := str(d); !ok || !contains(Days, s) {
				return false
			}
		}
		var w Window
		if json.Unmarshal(e, &w) != nil || len(windowProblems(w)) > 0 {
			return false
		}
	}
	return true
}

// fastFreeze: absent, or a list of freezes of RFC 3339 times, from before to.
func fastFreeze(raw json.RawMessage) bool {
	if raw == nil {
		return true
	}
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return false
	}
	for _, e := range list {
		var m map[string]json.RawMessage
		if !jsonObject(e, &m, "from", "to", "reason") || !optString(m, "reason", all) {
			return false
		}
		var times [2]time.Time
		for i, k := range []string{"from", "to"} {
			s, ok := str(m[k])
			if !ok {
				return false
			}
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return false
			}
			times[i] = t
		}
		if !times[0].Before(times[1]) {
			return false
		}
	}
	return true
}

func all(string) bool { return true }

func fastHealth(raw json.RawMessage) bool {
	var h map[string]json.RawMessage
	if !jsonObject(raw, &h, "http", "tcp", "exec", "requiredStatus", "retries", "retryDelay", "prometheus", "metrics") {
		return false
	}
	kinds := 0
	for _, k := range []string{"http", "tcp", "exec"} {
		if _, set := h[k]; set {
			kinds++
		}
	}
	if kinds != 1 || !optString(h, "http", reHTTP.MatchString) || !optString(h, "tcp", reTCP.MatchString) {
		return false
	}
	if e, set := h["exec"]; set {
		var argv []json.RawMessage
		if json.Unmarshal(e, &argv) != nil || len(argv) == 0 || e[0] != '[' {
			return false
		}
		for i, x := range argv {
			s, ok := str(x)
			if !ok || (i == 0 && programProblem(s) != "") {
				return false
			}
		}
	}
	_, prom := h["prometheus"]
	_, metrics := h["metrics"]
	return optString(h, "requiredStatus", oneOf(RequiredStatusOK, RequiredStatusDegr)) &&
		optInt(h, "retries", 0) && optString(h, "retryDelay", validDuration) &&
		optString(h, "prometheus", func(s string) bool { return reHTTP.MatchString(s) && prometheusURL(s) }) &&
		(!metrics || prom && fastMetrics(h["metrics"]))
}

// fastMetrics checks health.metrics: #Metric and checkMetrics.
func fastMetrics(raw json.RawMessage) bool {
	var list []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return false
	}
	seen := map[string]bool{}
	for _, e := range list {
		var m map[string]json.RawMessage
		if !jsonObject(e, &m, "name", "query", "max", "min", "for", "interval") {
			return false
		}
		name, ok := str(m["name"])
		if !ok || !reMetricName.MatchString(name) || seen[name] {
			return false
		}
		seen[name] = true
		if q, ok := str(m["query"]); !ok || !reQuery.MatchString(q) {
			return false
		}
		lo, loSet, loOK := optNumber(m, "min")
		hi, hiSet, hiOK := optNumber(m, "max")
		if !loOK || !hiOK || (!loSet && !hiSet) || (loSet && hiSet && lo > hi) {
			return false
		}
		if !optString(m, "for", positiveDuration) || !optString(m, "interval", positiveDuration) {
			return false
		}
	}
	return true
}

// optNumber: m[k] is absent (set false), or a JSON number (ok false when
// it is something else).
func optNumber(m map[string]json.RawMessage, k string) (f float64, set, ok bool) {
	raw, set := m[k]
	if !set {
		return 0, false, true
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, &f) != nil {
		return 0, true, false
	}
	return f, true, true
}

// fastTargets checks an app's nodes: "all", a list of valid names, or a
// selector of strings matching a declared node (when nodes are declared).
func fastTargets(raw json.RawMessage, declared map[string]Node) bool {
	switch {
	case raw == nil:
		return true
	case string(raw) == "[]" || string(raw) == "{}":
		return false // perhaps an open list or a pattern: the full path tells
	case raw[0] == '"':
		s, ok := str(raw)
		return ok && s == "all"
	case raw[0] == '[':
		var names []json.RawMessage
		if json.Unmarshal(raw, &names) != nil || len(names) > MaxNodes {
			return false
		}
		for _, x := range names {
			if s, ok := str(x); !ok || CheckName("node", s) != nil {
				return false
			}
		}
		return true
	case !stringMap(raw):
		return false
	}
	if len(declared) == 0 {
		return true
	}
	var t Targets
	if json.Unmarshal(raw, &t.Selector) != nil {
		return false
	}
	for name, n := range declared {
		if t.Match(name, n.Labels) {
			return true
		}
	}
	return false
}

// str decodes a JSON string (and only a string).
func str(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func boolean(raw json.RawMessage) bool {
	return bytes.Equal(raw, []byte("true")) || bytes.Equal(raw, []byte("false"))
}

func oneOf(values ...string) func(string) bool {
	return func(s string) bool { return contains(values, s) }
}

// optString: m[k] is absent, or a string that ok accepts.
func optString(m map[string]json.RawMessage, k string, ok func(string) bool) bool {
	raw, set := m[k]
	if !set {
		return true
	}
	s, isStr := str(raw)
	return isStr && ok(s)
}

// optInt: m[k] is absent, or an integer (as CUE writes an int: digits, no
// fraction or exponent) of at least min.
func optInt(m map[string]json.RawMessage, k string, min int64) bool {
	raw, set := m[k]
	if !set {
		return true
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return err == nil && n >= min
}

func optBool(m map[string]json.RawMessage, k string) bool {
	raw, set := m[k]
	return !set || boolean(raw)
}

// overLimit reports a fleet with more apps or nodes than the limits, at the
// field that declares them.
func overLimit(user cue.Value, apps, nodes int) error {
	var errs errorList
	for _, m := range []struct {
		field  string
		n, max int
	}{{"apps", apps, MaxApps}, {"nodes", nodes, MaxNodes}} {
		if m.n > m.max {
			errs.add(userPos(user.LookupPath(cue.MakePath(cue.Str(m.field)))),
				"%s: %d %s, more than %d, the limit of one fleet (docs/spec.md): split the fleet repo", m.field, m.n, m.field, m.max)
		}
	}
	return errs.err()
}
