package release

import (
	"strings"
	"testing"
	"time"
)

// The example from the manifest contract (docs/release-manifest.md).
const exampleManifest = `{"app": "web", "version": "1.1.0", "driver": "process",
 "command": ["bin/web", "--verbose"], "env": {"MODE": "prod"},
 "listen": [{"name": "http", "address": "127.0.0.1:8080"}],
 "drainTimeout": "10s",
 "health": {"http": "http://127.0.0.1:8080/health"},
 "hooks": {"install": ["bin/install"], "activate": ["bin/activate"], "rollback": ["bin/rollback"]}}`

func TestParseManifestExample(t *testing.T) {
	m, err := ParseManifest([]byte(exampleManifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.String() != "web 1.1.0" || m.DrainTimeoutDuration() != 10*time.Second || m.Hooks.Rollback[0] != "bin/rollback" {
		t.Errorf("parsed %+v", m)
	}
	m, err = ParseManifest([]byte(`{"app": "web", "version": "1", "command": ["web"]}`))
	if err != nil || m.Driver != "process" || m.DrainTimeoutDuration() != DefaultDrainTimeout {
		t.Errorf("defaults: %+v, %v", m, err)
	}
}

func TestParseManifestErrorsNameTheField(t *testing.T) {
	base := `"app": "web", "version": "1.0.0", "command": ["bin/web"]`
	for _, c := range []struct{ json, want string }{
		{`{"version": "1", "command": ["x"]}`, `app: invalid app name "": empty; want 1-63 ASCII letters`},
		// The one name rule of spec.CheckName (these three passed before).
		{`{"app": "web.lock", "version": "1", "command": ["x"]}`, `app: invalid app name "web.lock": ends in ".lock"`},
		{`{"app": "a..b", "version": "1", "command": ["x"]}`, `app: invalid app name "a..b": contains ".."`},
		{`{"app": "web.", "version": "1", "command": ["x"]}`, `app: invalid app name "web.": ends in "."`},
		{`{"app": "` + strings.Repeat("a", 64) + `", "version": "1", "command": ["x"]}`, `64 bytes long, more than 63`},
		{`{"app": "web", "command": ["x"]}`, `version: "": want`},
		{`{"app": "../web", "version": "1", "command": ["x"]}`, `app: invalid app name "../web"`},
		{`{"app": "web", "version": "1 0", "command": ["x"]}`, `version: "1 0"`},
		{`{` + base + `, "comand": ["x"]}`, `unknown field "comand"`},
		{`{` + base + `} {}`, `data after the JSON object`},
		{`{"app": "web", "version": "1"}`, `command: required`},
		{`{"app": "web", "version": "1", "command": ["../bin/web"]}`, `command[0]: "../bin/web": must be a path relative`},
		{`{` + base + `, "driver": "docker"}`, `driver: "docker": want "process" (default), "exec" or "otp"`},
		{`{` + base + `, "env": {"A=B": "x"}}`, `env: name "A=B"`},
		{`{` + base + `, "listen": [{"name": "http", "address": "8080"}]}`, `listen[0].address: "8080": want host:port`},
		{`{` + base + `, "listen": [{"name": "a", "address": ":1"}, {"name": "a", "address": ":2"}]}`, `listen[1].name: "a": duplicate`},
		{`{` + base + `, "listen": [{"name": "a", "address": "x", "network": "udp"}]}`, `listen[0].network: "udp"`},
		{`{` + base + `, "drainTimeout": "10"}`, `drainTimeout: "10": want a positive Go duration`},
		{`{` + base + `, "drainTimeout": "0s"}`, `drainTimeout: "0s"`},
		{`{"app": "web", "version": "1", "driver": "exec", "hooks": {"install": ["bin/i"]}}`, `hooks.activate: required by the exec driver`},
		{`{` + base + `, "health": {"http": "ftp://x"}}`, `health.http: "ftp://x"`},
		{`{` + base + `, "health": {"http": "http://x/", "tcp": "x:1"}}`, `health: set exactly one of http, tcp or exec`},
		{`{` + base + `, "hooks": {"install": ["/bin/sh", "-c", "x"]}}`, `hooks.install[0]: "/bin/sh"`},
	} {
		_, err := ParseManifest([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), ManifestName+": ") {
			t.Errorf("%s:\n got %v\nwant %q", c.json, err, c.want)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	m := &Manifest{Driver: "docker", DrainTimeout: "soon"}
	err := m.Validate()
	for _, field := range []string{"app:", "version:", "driver:", "drainTimeout:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("missing %s in %v", field, err)
		}
	}
}
