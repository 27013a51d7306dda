package fleetrepo

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"cuelang.org/go/cue/parser"
)

// FuzzSetField checks the CUE field editor on any source, app, field path and
// value: SetField either returns an error (the source does not parse, the
// value is not representable, the path has an empty label or is not UTF-8,
// or there is no
// braced struct for the app) or
// source that parses, in which the app's field reads as the value's literal
// and every other leaf of the app, apart from the field's own parents and
// children, keeps its text.
func FuzzSetField(f *testing.F) {
	seeds := []struct {
		src, app, field string
		kind            uint8
	}{
		{"package fleet\n\n// The snake game.\napps: snake_game: {\n\tversion: \"1.0.0\" // bumped\n\tpaused:  false\n}\n", "snake_game", "version", 0},
		{"apps: {\n  web: {version: \"2\"}\n  api: {version: \"2\"}\n}\n", "api", "version", 0},
		{"apps: \"my-app\": version: \"1\"\napps: web: version: \"1\"\n", "my-app", "version", 0},
		{"apps: web: #App & {\n\tversion: \"1\"\n\trollout: batchSize: 2\n}\n", "web", "paused", 1},
		{"apps: web: {\n\tversion: \"1\"\n\trollout: {\n\t\tbatchSize: 2 // two at a time\n\t}\n}\n", "web", "rollout.batchSize", 2},
		{"apps: web: {version: \"1\"}\n", "web", "paused", 1},
		{"apps: web: {version: \"1\"}\n", "web", "rollout.canary.monitor", 0},
		{"apps: web: (#App & {\n\tversion: \"1\"\n}) & {paused: true}\n", "web", "rollout.strategy", 0},
		{"apps: web: version: \"1\"\n", "web", "paused", 1},
		{"apps: web: {version: \"1\"}\napps: web: {version: \"1\"}\n", "web", "version", 3},
	}
	for _, s := range seeds {
		f.Add(s.src, s.app, s.field, s.kind, "1.1.0", int64(5), 0.5, true)
	}
	f.Fuzz(func(t *testing.T, src, app, field string, kind uint8, s string, n int64, x float64, b bool) {
		var value any
		switch kind % 4 {
		case 0:
			value = s
		case 1:
			value = b
		case 2:
			value = n
		case 3:
			value = x
		}
		out, err := SetField([]byte(src), app, field, value)
		lit, litErr := cueLiteral(value)
		_, parseErr := parser.ParseFile("spec.cue", src, parser.ParseComments)
		emptyLabel := slices.Contains(strings.Split(field, "."), "") || !utf8.ValidString(field)
		if err != nil {
			if litErr == nil && parseErr == nil && !emptyLabel && !errors.Is(err, ErrAppNotFound) {
				t.Fatalf("SetField(%q, %q, %q, %#v): %v: want a parse error, ErrAppNotFound or success", src, app, field, value, err)
			}
			return
		}
		if litErr != nil || parseErr != nil || emptyLabel {
			t.Fatalf("SetField(%q, %q, %q, %#v) succeeded on an input it cannot handle (literal: %v, parse: %v)", src, app, field, value, litErr, parseErr)
		}
		after, err := appLeaves(out, app)
		if err != nil {
			t.Fatalf("SetField(%q, %q, %q, %#v) wrote source that does not parse: %v\n%s", src, app, field, value, err, out)
		}
		if after[field] != lit {
			t.Fatalf("SetField(%q, %q, %q, %#v): apps.%s.%s reads %q, want %q\n%s", src, app, field, value, app, field, after[field], lit, out)
		}
		before, _ := appLeaves([]byte(src), app)
		for k, v := range before {
			related := k == field || strings.HasPrefix(k, field+".") || strings.HasPrefix(field, k+".")
			if !related && after[k] != v {
				t.Fatalf("SetField(%q, %q, %q, %#v) changed apps.%s.%s from %q to %q\n%s", src, app, field, value, app, k, v, after[k], out)
			}
		}
	})
}
