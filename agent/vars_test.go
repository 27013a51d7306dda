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
	m := release.Manifest{
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
