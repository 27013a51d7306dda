package agent

import (
	"strings"
	"testing"

	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"PORT": "18101", "HOST": "127.0.0.1", "EMPTY": ""}
	tests := []struct{ in, want, err string }{
		{"${HOST}:${PORT}", "127.0.0.1:18101", ""},
		{"no vars", "no vars", ""},
		{"$PORT stays", "$PORT stays", ""},
		{"x${EMPTY}y", "xy", ""},
		{"${NOPE}", "", "undefined node variable NOPE"},
		{"${A}${B}", "", "undefined node variable A, B"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, vars)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expand(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestFlagVarsWin(t *testing.T) {
	fleet := &spec.Fleet{Nodes: map[string]spec.Node{"n1": {Vars: map[string]string{"PORT": "1", "ZONE": "a"}}}}
	got := nodeVars(fleet, "n1", map[string]string{"PORT": "2"})
	if got["PORT"] != "2" || got["ZONE"] != "a" {
		t.Fatalf("vars = %v", got)
	}
	if got := nodeVars(fleet, "other", nil); len(got) != 0 {
		t.Fatalf("undeclared node vars = %v", got)
	}
}

func TestExpandManifest(t *testing.T) {
	m := release.Manifest{App: "web", Version: "1.0.0",
		Command: []string{"bin/web", "--port=${PORT}"},
		Env:     map[string]string{"ADDR": "${HOST}:${PORT}"},
		Listen:  []release.Listener{{Name: "http", Address: "${HOST}:${PORT}"}},
		Health:  &release.Health{HTTP: "http://${HOST}:${PORT}/health"},
	}
	vars := map[string]string{"PORT": "8080", "HOST": "127.0.0.1"}
	got, err := expandManifest(m, vars)
	if err != nil {
		t.Fatal(err)
	}
	if got.Command[1] != "--port=8080" || got.Env["ADDR"] != "127.0.0.1:8080" ||
		got.Listen[0].Address != "127.0.0.1:8080" || got.Health.HTTP != "http://127.0.0.1:8080/health" {
		t.Fatalf("expanded: %+v", got)
	}
	if m.Listen[0].Address != "${HOST}:${PORT}" || m.Env["ADDR"] != "${HOST}:${PORT}" {
		t.Fatal("expandManifest changed its input")
	}
	delete(vars, "HOST")
	if _, err := expandManifest(m, vars); err == nil || !strings.Contains(err.Error(), "HOST") {
		t.Fatalf("missing HOST: %v", err)
	}
}

// TestExpandManifestCannotChooseAProgram: node variables from the fleet repo
// that make command[0] or health.exec[0] name a program outside the
// release, or a unix socket path outside the socket directory, are refused
// after substitution (the manifest alone validated before).
func TestExpandManifestCannotChooseAProgram(t *testing.T) {
	for _, c := range []struct {
		m    release.Manifest
		vars map[string]string
		want string
	}{
		{release.Manifest{Command: []string{"${BIN}", "-c", "id"}}, map[string]string{"BIN": "/bin/sh"}, `command[0]: "/bin/sh"`},
		{release.Manifest{Command: []string{"bin/${FLAVOR}"}}, map[string]string{"FLAVOR": "../../bin/sh"}, `command[0]: "bin/../../bin/sh"`},
		{release.Manifest{Command: []string{"bin/web"}, Health: &release.Health{Exec: []string{"${SH}", "-c", "true"}}},
			map[string]string{"SH": "/bin/sh"}, `health.exec[0]: "/bin/sh"`},
		{release.Manifest{Command: []string{"bin/web"}, Listen: []release.Listener{{Name: "s", Network: "unix", Address: "${SOCK}"}}},
			map[string]string{"SOCK": "../../etc/passwd"}, `listen[0].address: "../../etc/passwd"`},
	} {
		c.m.App, c.m.Version, c.m.Driver = "web", "1.0.0", "process"
		if err := c.m.Validate(); err != nil {
			t.Fatalf("%+v before substitution: %v", c.m, err)
		}
		_, err := expandManifest(c.m, c.vars)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "after substituting node variables") {
			t.Errorf("%+v with %v:\n got %v\nwant %q", c.m, c.vars, err, c.want)
		}
	}
	ok := release.Manifest{App: "web", Version: "1.0.0", Command: []string{"bin/${FLAVOR}", "--mode=${MODE}"}}
	if got, err := expandManifest(ok, map[string]string{"FLAVOR": "web-fast", "MODE": "x; rm -rf /"}); err != nil || got.Command[0] != "bin/web-fast" {
		t.Errorf("a variable choosing among the release's programs: %+v, %v", got, err)
	}
}
