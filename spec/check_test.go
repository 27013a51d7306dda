package spec

import (
	"errors"
	"strings"
	"testing"
)

// header starts every test file: a template that makes apps valid unless a
// case says otherwise, and three declared nodes.
const header = `package fleet

apps: [Name=_]: {
	version: string
	artifact: url: "https://r.example/\(Name)-\(version).tar.gz"
}
nodes: {
	a: labels: region: "eu"
	b: labels: region: "eu"
	c: labels: region: "us"
}
`

// loadErrors loads header+src as f.cue and returns the error lines.
func loadErrors(t *testing.T, files map[string]string) []string {
	t.Helper()
	in := make(map[string][]byte, len(files))
	for name, src := range files {
		in[name] = []byte(src)
	}
	_, err := LoadFiles(in)
	if err == nil {
		return nil
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("LoadFiles: got %T %v, want *Errors", err, err)
	}
	return strings.Split(errs.Error(), "\n")
}

func TestCheckMistakes(t *testing.T) {
	tests := []struct {
		name string
		app  string // the body of apps: x: {...}, after the header
		want []string
	}{
		{"valid", `version: "1.0.0", health: http: "http://127.0.0.1:8080/health"`, nil},
		{"misspelled field with other errors", `version: "1.0", health: http: "http://h/x", rollout: batchsize: 2`, []string{
			`f.cue:12:20: apps.x.version: got "1.0", want a semantic version such as "1.2.3" or "v1.2.3"`,
			`f.cue:12:64: apps.x.rollout.batchsize: unknown field "batchsize", did you mean "batchSize"?`,
		}},
		{"unknown field far from any", `version: "1.0.0", health: http: "http://h/x", colour: "red"`, []string{
			`f.cue:12:57: apps.x.colour: unknown field "colour", want one of artifact, health, nodes, paused, rollout, version`,
		}},
		{"unknown strategy", `version: "1.0.0", health: http: "http://h/x", rollout: strategy: "blue_green"`, []string{
			`f.cue:12:76: apps.x.rollout.strategy: got "blue_green", want "rolling", "canary" or "all_at_once"`,
		}},
		{"bad semver", `version: "latest", health: http: "http://h/x"`, []string{
			`f.cue:12:20: apps.x.version: got "latest", want a semantic version such as "1.2.3" or "v1.2.3"`,
		}},
		{"bad duration", `version: "1.0.0", health: {http: "http://h/x", retryDelay: "5 sec"}`, []string{
			`f.cue:12:70: apps.x.health.retryDelay: got "5 sec", want a Go duration such as "5s"`,
		}},
		{"negative duration", `version: "1.0.0", health: http: "http://h/x", rollout: canary: monitor: "-5m"`, []string{
			`f.cue:12:83: apps.x.rollout.canary.monitor: got "-5m", want a Go duration such as "5m"`,
		}},
		// nodeTimeout 0 marked every node of a wave unreachable the moment
		// the wave opened: it validated.
		{"zero nodeTimeout", `version: "1.0.0", health: http: "http://h/x", rollout: nodeTimeout: "0s"`, []string{
			`f.cue:12:79: apps.x.rollout.nodeTimeout: got "0s", want a positive Go duration such as "60s" or "2m"`,
		}},
		{"batchSize 0", `version: "1.0.0", health: http: "http://h/x", rollout: batchSize: 0`, []string{
			`f.cue:12:77: apps.x.rollout.batchSize: got 0, want an integer >= 1`,
		}},
		{"two health kinds", `version: "1.0.0", health: {http: "http://h/x", tcp: "h:1"}`, []string{
			`f.cue:12:37: apps.x.health: got http and tcp, want exactly one of http, tcp or exec`,
		}},
		{"no health kind", `version: "1.0.0", health: retries: 1`, []string{
			`f.cue:12:29: apps.x.health: missing, want exactly one of http, tcp or exec`,
		}},
		{"selector matching no node", `version: "1.0.0", health: http: "http://h/x", nodes: {region: "mars"}`, []string{
			`f.cue:12:64: apps.x.nodes: selector {region: "mars"} matches no declared node, want labels of at least one of a, b, c`,
		}},
		{"list naming undeclared node is fine", `version: "1.0.0", health: http: "http://h/x", nodes: ["a", "z"]`, nil},
		{"nodes of the wrong type", `version: "1.0.0", health: http: "http://h/x", nodes: 3`, []string{
			`f.cue:12:64: apps.x.nodes: got 3, want "all", a list of node names or a label selector such as {region: "eu"}`,
		}},
		{"missing version", `health: http: "http://h/x"`, []string{
			`f.cue:4:2: apps.x.version: missing, want a semantic version such as "1.2.3" or "v1.2.3"`,
		}},
		{"bad sha256", `version: "1.0.0", health: http: "http://h/x", artifact: sha256: "abc"`, []string{
			`f.cue:12:75: apps.x.artifact.sha256: got "abc", want 64 lowercase hex digits`,
		}},
		{"bad exec", `version: "1.0.0", health: exec: []`, []string{
			`f.cue:12:43: apps.x.health.exec: got [], want a non-empty list of strings: a program of the release (a path relative to the release, such as "bin/check") and its arguments`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadErrors(t, map[string]string{"f.cue": header + "apps: x: {" + tt.app + "}\n"})
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCheckFleetLevel(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"unknown top-level field", map[string]string{"f.cue": "package fleet\napp: x: {}\n"}, []string{
			`f.cue:2:1: app: unknown field "app", did you mean "apps"?`,
		}},
		{"invalid app name", map[string]string{"f.cue": header + `apps: "my app": {version: "1.0.0", health: tcp: "h:1"}` + "\n"}, []string{
			`f.cue:12:7: apps."my app": invalid app name "my app": character ' ' at byte 2; want ` + NameRule,
		}},
		// Found by FuzzLoadFiles: these passed, and no ref could be made for them.
		{"app names that cannot be Git refs", map[string]string{"f.cue": header + `apps: "web.lock": {version: "1.0.0", health: tcp: "h:1"}` + "\n" +
			`apps: "a..b": {version: "1.0.0", health: tcp: "h:1"}` + "\n" + `apps: "web.": {version: "1.0.0", health: tcp: "h:1"}` + "\n"}, []string{
			`f.cue:12:7: apps."web.lock": invalid app name "web.lock": ends in ".lock"; want 1-63 ASCII letters, digits, ".", "_" or "-", starting with a letter or digit, without "..", not ending in "." or ".lock"`,
			`f.cue:13:7: apps."a..b": invalid app name "a..b": contains ".."; want 1-63 ASCII letters, digits, ".", "_" or "-", starting with a letter or digit, without "..", not ending in "." or ".lock"`,
			`f.cue:14:7: apps."web.": invalid app name "web.": ends in "."; want 1-63 ASCII letters, digits, ".", "_" or "-", starting with a letter or digit, without "..", not ending in "." or ".lock"`,
		}},
		{"conflict between files", map[string]string{
			"a.cue": header + `apps: x: {version: "1.0.0", health: tcp: "h:1"}` + "\n",
			"b.cue": "package fleet\napps: x: version: \"1.1.0\"\n",
		}, []string{
			`a.cue:12:20: apps.x.version: conflicting values "1.1.0" and "1.0.0"`,
		}},
		{"two packages", map[string]string{
			"a.cue": header,
			"b.cue": "package other\n",
		}, []string{
			`b.cue:1:1: package other, want package fleet like a.cue (one package per directory)`,
		}},
		{"no package clause next to a package", map[string]string{
			"a.cue": "apps: {}\n",
			"b.cue": "package fleet\n",
		}, []string{
			`b.cue:1:1: package fleet, want no package clause like a.cue (one package per directory)`,
		}},
		{"import outside the standard library", map[string]string{"a.cue": "package fleet\nimport \"example.com/foo\"\napps: x: foo.x\n"}, []string{
			`a.cue:2:8: import "example.com/foo": want a package of CUE's standard library (such as "strings"); a fleet repo is one package`,
		}},
		{"an app that is not a struct", map[string]string{"a.cue": "package fleet\napps: web: 5\nnodes: n: 1\n"}, []string{
			`a.cue:2:12: apps.web: got 5, want a struct with artifact, health, nodes, paused, rollout, version`,
			`a.cue:3:11: nodes.n: got 1, want a struct with hold, labels, pin, vars`,
		}},
		{"closed user definition", map[string]string{"a.cue": "package fleet\n#Base: {artifact: url: \"https://x/y\"}\napps: web: #Base & {version: \"1.0.0\", health: tcp: \"h:1\"}\n"}, []string{
			`a.cue:3:20: apps.web.rollout: field not allowed by a closed definition in the fleet (end it with "..." or use a hidden field such as _base)`,
			`a.cue:3:21: apps.web.version: field not allowed by a closed definition in the fleet (end it with "..." or use a hidden field such as _base)`,
		}},
		{"typos in some apps next to errors in another", map[string]string{"f.cue": header + `apps: a: {version: "1.0.0", health: tcp: "h:1", rollout: batchSize: 0}
apps: b: {version: "1.0.0", health: tcp: "h:1", rollout: batchsize: 2}
apps: c: {version: "1.0", health: tcp: "h:1", colour: 2}
nodes: d: {labels: region: "eu", lables: x: "y"}
`}, []string{
			`f.cue:12:69: apps.a.rollout.batchSize: got 0, want an integer >= 1`,
			`f.cue:13:58: apps.b.rollout.batchsize: unknown field "batchsize", did you mean "batchSize"?`,
			`f.cue:14:20: apps.c.version: got "1.0", want a semantic version such as "1.2.3" or "v1.2.3"`,
			`f.cue:14:47: apps.c.colour: unknown field "colour", want one of artifact, health, nodes, paused, rollout, version`,
			`f.cue:15:34: nodes.d.lables: unknown field "lables", did you mean "labels"?`,
		}},
		{"hold and pin mistakes", map[string]string{"f.cue": header + `nodes: a: hold: "yes"
nodes: b: pin: {web: "latest", "x y": "1.0.0"}
nodes: c: pin: ["web"]
`}, []string{
			`f.cue:12:17: nodes.a.hold: got "yes", want true or false`,
			`f.cue:13:22: nodes.b.pin.web: got "latest", want a semantic version such as "1.2.3" that the node stays on`,
			`f.cue:13:32: nodes.b.pin."x y": invalid app name "x y": character ' ' at byte 1; want ` + NameRule,
			`f.cue:14:16: nodes.c.pin: got ["web"], want a map of app names to versions, such as {web: "1.2.3"}`,
		}},
		{"syntax error", map[string]string{"a.cue": "package fleet\napps: x: {\n"}, []string{
			`a.cue:2:12: expected '}', found 'EOF'`,
		}},
		{"undefined reference", map[string]string{"a.cue": header + `apps: x: {version: v, health: tcp: "h:1"}` + "\n"}, []string{
			`a.cue:12:20: reference "v" not found`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadErrors(t, tt.files)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestClosest(t *testing.T) {
	names := []string{"batchDelay", "batchSize", "canary", "strategy"}
	for in, want := range map[string]string{
		"batchsize": "batchSize",
		"stratgey":  "strategy",
		"canery":    "canary",
		"colour":    "",
		"x":         "",
	} {
		if got := closest(in, names); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
