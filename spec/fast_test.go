package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"cuelang.org/go/cue/cuecontext"
)

// TestFastPathAgreesWithSchema: on valid fleets the fast path (JSON checked
// in Go) returns exactly what the full path (unification with schema.cue)
// returns. Every invalid case of the other tests goes through LoadFiles, so
// a fast path that accepted what the schema refuses fails them.
func TestFastPathAgreesWithSchema(t *testing.T) {
	example := map[string][]byte{}
	matches, _ := filepath.Glob("../examples/fleet/*.cue")
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		example[m] = b
	}
	fleets := map[string]map[string][]byte{
		"example":   example,
		"1000 apps": fleet1000(),
		"every field": {"f.cue": []byte("package fleet\nnodes: {a: labels: region: \"eu\", b: {}, c: labels: region: \"us\"}\n" + `apps: x: {version: "v2.0.0-rc.1+b5", paused: false, nodes: ["a", "b"]
	artifact: {url: "file:///r/x.tgz", sha256: "` + strings.Repeat("ab", 32) + `", signature: "https://s/x.sig"}
	rollout: {strategy: "canary", batchSize: 7, batchDelay: "1m30s", nodeTimeout: "2m", rollbackOnFail: false, onUnreachable: "fail", canary: {count: 2, monitor: "10m"}, maxFailures: "20%", approve: "after-canary",
		windows: [{days: ["mon", "sun"], start: "22:00", end: "24:00", timezone: "Europe/Berlin"}, {days: ["tue"], start: "00:00", end: "01:00"}],
		freeze: [{from: "2026-12-20T00:00:00+01:00", to: "2027-01-04T00:00:00Z", reason: "holidays"}, {from: "2027-02-01T00:00:00Z", to: "2027-02-02T00:00:00Z"}],
		stages: [{nodes: {region: "eu"}, batchSize: 1, bake: "1h"}, {nodes: ["b"]}, {nodes: {region: "mars"}, bake: "0s"}, {nodes: "all"}]}
	health: {exec: ["bin/check", "${PORT}"], requiredStatus: "degraded", retries: 0, retryDelay: "1s"}}
apps: y: {version: "1.0.0", artifact: url: "https://r/y.tgz", health: {tcp: "127.0.0.1:9", prometheus: "http://${PROM}:9090",
	metrics: [{name: "errors", query: "rate(x{node=\"${NODE}\"}[1m])", max: 0.05}, {name: "p.99", query: "up", min: -1, max: 2.5e3, for: "2m", interval: "5s"}]}, nodes: {region: "us"}}
apps: z: {version: "1.0.0", artifact: url: "http://r/z.tgz", health: http: "https://h/x", nodes: "all"}
nodes: a: vars: PORT: "8080"
nodes: b: {hold: true, pin: {x: "v2.0.0-rc.1+b5", y: "1.0.0"}}
`)},
		"no nodes": {"f.cue": []byte(minimal)},
	}
	for name, files := range fleets {
		t.Run(name, func(t *testing.T) {
			ctx := cuecontext.New()
			user, err := buildUser(ctx, files)
			if err != nil {
				t.Fatal(err)
			}
			fast, ok, err := fastLoad(user)
			if !ok || err != nil {
				t.Fatal("the fast path deferred a valid fleet")
			}
			full, err := fullLoad(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fast, full) {
				t.Errorf("fast path:\n%#v\nfull path:\n%#v", fast, full)
			}
		})
	}
}

// TestBytesAreNotStrings: a bytes value where the schema wants a string is
// an error, though JSON (the fast path's view) shows it as a string.
func TestBytesAreNotStrings(t *testing.T) {
	got := loadErrors(t, map[string]string{"f.cue": `package fleet
apps: web: {version: "1.0.0", artifact: url: "https://r/w.tgz", health: tcp: "h:1"}
nodes: a: labels: region: 'eu'
`})
	if len(got) != 1 || !strings.HasPrefix(got[0], "f.cue:3:27: nodes.a.labels.region: ") {
		t.Errorf("errors: %q", got)
	}
}
