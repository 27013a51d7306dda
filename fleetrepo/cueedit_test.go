package fleetrepo

import (
	"strings"
	"testing"
)

func TestSetField(t *testing.T) {
	tests := []struct {
		name, src, app, field string
		value                 any
		want                  string
	}{{
		name: "chained labels and a comment survive",
		src: `package fleet

// The snake game.
apps: snake_game: {
	version: "1.0.0" // bumped by reconciler
	paused:  false
}
`,
		app: "snake_game", field: "version", value: "1.1.0",
		want: `package fleet

// The snake game.
apps: snake_game: {
	version: "1.1.0" // bumped by reconciler
	paused:  false
}
`,
	}, {
		name: "nested braces, other apps untouched",
		src:  "apps: {\n  web: {version: \"2\"}\n  api: {version: \"2\"}\n}\n",
		app:  "api", field: "version", value: "3",
		want: "apps: {\n  web: {version: \"2\"}\n  api: {version: \"3\"}\n}\n",
	}, {
		name: "shorthand all the way down, quoted label",
		src:  "apps: \"my-app\": version: \"1\"\napps: web: version: \"1\"\n",
		app:  "my-app", field: "version", value: "1.1",
		want: "apps: \"my-app\": version: \"1.1\"\napps: web: version: \"1\"\n",
	}, {
		name: "missing field is inserted with the struct's indentation",
		src:  "apps: web: #App & {\n\tversion: \"1\"\n\trollout: batchSize: 2\n}\n",
		app:  "web", field: "paused", value: true,
		want: "apps: web: #App & {\n\tversion: \"1\"\n\trollout: batchSize: 2\n\tpaused: true\n}\n",
	}, {
		name: "nested field",
		src:  "apps: web: {\n\tversion: \"1\"\n\trollout: {\n\t\tbatchSize: 2 // two at a time\n\t}\n}\n",
		app:  "web", field: "rollout.batchSize", value: 5,
		want: "apps: web: {\n\tversion: \"1\"\n\trollout: {\n\t\tbatchSize: 5 // two at a time\n\t}\n}\n",
	}, {
		name: "one-line struct gets the new field on its own line",
		src:  "apps: web: {version: \"1\"}\n",
		app:  "web", field: "paused", value: false,
		want: "apps: web: {version: \"1\"\npaused: false\n}\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SetField([]byte(tt.src), tt.app, tt.field, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestSetFieldUnknownApp(t *testing.T) {
	_, err := SetField([]byte("apps: web: version: \"1\"\n"), "api", "version", "2")
	if err == nil || !strings.Contains(err.Error(), "app not found") {
		t.Fatalf("err = %v, want app not found", err)
	}
}

func TestAppLeaves(t *testing.T) {
	leaves, err := appLeaves([]byte("apps: web: {\n\tversion: \"1\"\n\trollout: batchSize: 2\n}\napps: web: paused: true\n"), "web")
	if err != nil {
		t.Fatal(err)
	}
	if leaves["version"] != `"1"` || leaves["rollout.batchSize"] != "2" || leaves["paused"] != "true" {
		t.Fatalf("leaves = %v", leaves)
	}
}

// TestSetFieldRefusesEmptyLabels: "rollout..batchSize", "." or "" wrote a
// field with empty labels (`"": "": false`), and "\xf9" one labelled "\ufffd"
// (json.Marshal's replacement), that appLeaves and the spec never read back
// as the field asked for. Found by FuzzSetField.
func TestSetFieldRefusesEmptyLabels(t *testing.T) {
	for _, field := range []string{"", ".", "rollout..batchSize", "version.", "\xf9", "rollout.\xff"} {
		out, err := SetField([]byte("apps: web: {version: \"1\"}\n"), "web", field, "2")
		if err == nil || !strings.Contains(err.Error(), "empty label or is not UTF-8") {
			t.Errorf("SetField(field %q) = %q, %v: want an error naming the empty label", field, out, err)
		}
	}
}
