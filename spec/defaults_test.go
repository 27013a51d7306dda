package spec

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestWrittenButIncomplete: a field the user wrote must be concrete; only a
// field the user did not write takes its default. Each case validated
// before, taking the schema's default (an app silently unpaused, a cycle
// exported as batchSize 3).
func TestWrittenButIncomplete(t *testing.T) {
	const app = `apps: web: {version: "1.0.0", artifact: url: "https://r.example/w.tgz", health: tcp: "h:1"}` + "\n"
	tests := []struct {
		name, src string
		want      []string
	}{
		{"abstract batchSize", app + "apps: web: rollout: batchSize: _n\n_n: int\n", []string{
			`f.cue:3:32: apps.web.rollout.batchSize: got _n, not a concrete value (incomplete value >=1 & int), want an integer >= 1: give it a value, or remove it to take the default`,
		}},
		{"abstract batchSize next to another error of the app", app + "apps: web: rollout: {batchSize: _n, strategy: \"blue\"}\n_n: int\n", []string{
			`f.cue:3:33: apps.web.rollout.batchSize: got _n, not a concrete value (incomplete value >=1 & int), want an integer >= 1: give it a value, or remove it to take the default`,
			`f.cue:3:47: apps.web.rollout.strategy: got "blue", want "rolling", "canary" or "all_at_once"`,
		}},
		{"open list of targets", app + "apps: web: nodes: _t\n_t: [...string]\n", []string{
			`f.cue:3:19: apps.web.nodes: got _t, a type, not a value: an open list, which would target no node: list the names`,
		}},
		{"selector that is only a pattern", app + "apps: web: nodes: _t\n_t: {[string]: string}\n", []string{
			`f.cue:3:19: apps.web.nodes: got _t, a type, not a value: a selector with only a pattern, which would target every node: write the labels, or "all"`,
		}},
		{"abstract paused", app + "apps: web: paused: _freeze\n_freeze: bool\n", []string{
			`f.cue:3:20: apps.web.paused: got _freeze, not a concrete value (incomplete value bool), want true or false: give it a value, or remove it to take the default`,
		}},
		{"abstract rollbackOnFail", app + "apps: web: rollout: rollbackOnFail: _r\n_r: bool\n", []string{
			`f.cue:3:37: apps.web.rollout.rollbackOnFail: got _r, not a concrete value (incomplete value bool), want true or false: give it a value, or remove it to take the default`,
		}},
		{"cycle of hidden fields", app + "apps: web: rollout: batchSize: _a\n_a: _b + 1\n_b: _a + 1\n", []string{
			`f.cue:3:32: apps.web.rollout.batchSize: got _a, not a concrete value (cycle with field: _b(:fleet)), want an integer >= 1: give it a value, or remove it to take the default`,
		}},
		{"cycle across apps", app + strings.ReplaceAll(app, "web", "api") +
			"apps: web: rollout: batchSize: apps.api.rollout.batchSize\napps: api: rollout: batchSize: apps.web.rollout.batchSize\n", []string{
			`f.cue:4:32: apps.web.rollout.batchSize: got apps.api.rollout.batchSize, not a concrete value (incomplete value >=1 & int), want an integer >= 1: give it a value, or remove it to take the default`,
			`f.cue:5:32: apps.api.rollout.batchSize: got apps.web.rollout.batchSize, not a concrete value (incomplete value >=1 & int), want an integer >= 1: give it a value, or remove it to take the default`,
		}},
		{"a type written in place of a value", app + "apps: web: rollout: strategy: string\n", []string{
			`f.cue:3:31: apps.web.rollout.strategy: got string, not a concrete value, want "rolling", "canary" or "all_at_once": give it a value, or remove it to take the default`,
		}},
		{"a bound written in place of a value", app + "apps: web: health: retries: >=2\n", []string{
			`f.cue:3:29: apps.web.health.retries: got >=2, not a concrete value, want an integer >= 0: give it a value, or remove it to take the default`,
		}},
		{"reference to an app that is not there", `apps: x: {version: apps.web.version, artifact: url: "https://r.example/x.tgz", health: tcp: "h:1"}` + "\n", []string{
			`f.cue:2:20: apps.x.version: got apps.web.version, not a concrete value (undefined field: web), want a semantic version such as "1.2.3" or "v1.2.3": give it a value`,
		}},
		{"reference to a field left to its default", app + `apps: x: {version: apps.web.rollout.batchDelay, artifact: url: "https://r.example/x.tgz", health: tcp: "h:1"}` + "\n", []string{
			`f.cue:3:20: apps.x.version: got apps.web.rollout.batchDelay, not a concrete value (cannot reference optional field: batchDelay), want a semantic version such as "1.2.3" or "v1.2.3": give it a value`,
		}},
		{"ftp artifact", `apps: web: {version: "1.0.0", artifact: url: "ftp://r.example/w.tgz", health: tcp: "h:1"}` + "\n", []string{
			`f.cue:2:46: apps.web.artifact.url: got "ftp://r.example/w.tgz", want an http://, https:// or file:// URL such as "https://releases.example.com/app-1.2.3.tar.gz"`,
		}},
		{"s3 signature", app + `apps: web: artifact: signature: "s3://bucket/w.tgz.sig"` + "\n", []string{
			`f.cue:3:33: apps.web.artifact.signature: got "s3://bucket/w.tgz.sig", want an http://, https:// or file:// URL of the cosign signature (default url + ".sig")`,
		}},
		// URLs of an agent's schemes that no agent can fetch either
		// (release.parseSource refuses them): they validated.
		{"http URL without a host", `apps: web: {version: "1.0.0", artifact: url: "http://ada:pw@/w.tgz", health: tcp: "h:1"}` + "\n", []string{
			`f.cue:2:46: apps.web.artifact.url: got "http://ada:pw@/w.tgz", want an http://, https:// or file:// URL such as "https://releases.example.com/app-1.2.3.tar.gz"`,
		}},
		{"file URL of another host", `apps: web: {version: "1.0.0", artifact: url: "file://builder/srv/w.tgz", health: tcp: "h:1"}` + "\n", []string{
			`f.cue:2:46: apps.web.artifact.url: got "file://builder/srv/w.tgz", want an http://, https:// or file:// URL such as "https://releases.example.com/app-1.2.3.tar.gz"`,
		}},
		{"URL that does not parse", `apps: web: {version: "1.0.0", artifact: url: "https://r.example/%zz", health: tcp: "h:1"}` + "\n", []string{
			`f.cue:2:46: apps.web.artifact.url: got "https://r.example/%zz", want an http://, https:// or file:// URL such as "https://releases.example.com/app-1.2.3.tar.gz"`,
		}},
		{"signature without a host", app + `apps: web: artifact: signature: "https:///w.sig"` + "\n", []string{
			`f.cue:3:33: apps.web.artifact.signature: got "https:///w.sig", want an http://, https:// or file:// URL of the cosign signature (default url + ".sig")`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadErrors(t, map[string]string{"f.cue": "package fleet\n" + tt.src})
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestDefaultsFillWhatIsNotWritten: fields the user did not write take the
// documented defaults; a user's own CUE default is the user's value.
func TestDefaultsFillWhatIsNotWritten(t *testing.T) {
	f, err := LoadFiles(map[string][]byte{"f.cue": []byte(`package fleet
apps: [_]: rollout: batchSize: *5 | int
apps: web: {version: "1.0.0", artifact: url: "https://r.example/w.tgz", health: tcp: "h:1"}
apps: api: {version: "1.0.0", artifact: url: "file:///r/a.tgz", health: {exec: ["bin/check"], retries: 0}
	rollout: {batchSize: 1, rollbackOnFail: false, canary: monitor: "1m"}, paused: true, nodes: ["n1"]}
`)})
	if err != nil {
		t.Fatal(err)
	}
	web, api := f.Apps["web"], f.Apps["api"]
	want := defaultApp()
	want.Name, want.Version = "web", "1.0.0"
	want.Artifact = Artifact{URL: "https://r.example/w.tgz", Signature: "https://r.example/w.tgz.sig"}
	want.Health.TCP = "h:1"
	want.Rollout.BatchSize = 5
	if !reflect.DeepEqual(web, want) {
		t.Errorf("web:\n%+v\nwant:\n%+v", web, want)
	}
	if r := api.Rollout; r.BatchSize != 1 || r.RollbackOnFail || r.Canary.Monitor.Duration != time.Minute || r.Canary.Count != 1 ||
		api.Health.Retries != 0 || api.Health.RetryDelay.Duration != 5*time.Second || !api.Paused || api.Nodes.Names[0] != "n1" ||
		api.Artifact.Signature != "file:///r/a.tgz.sig" {
		t.Errorf("api = %+v", api)
	}
}
