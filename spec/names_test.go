package spec

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	long := strings.Repeat("a", MaxNameLength)
	for _, name := range []string{"web", "snake_game", "eu-1", "a.b", "A9", "v1.2.3", long, "x"} {
		if err := CheckName("node", name); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		}
	}
	for name, why := range map[string]string{
		"":                       "empty",
		long + "a":               "64 bytes long, more than 63",
		strings.Repeat("a", 300): "300 bytes long",
		"a/b":                    `character '/'`,
		"..":                     `starts with '.'`,
		"../x":                   `starts with '.'`,
		"a..b":                   `contains ".."`,
		".hidden":                `starts with '.'`,
		"-rf":                    `starts with '-'`,
		"_x":                     `starts with '_'`,
		"web.":                   `ends in "."`,
		"web.lock":               `ends in ".lock"`,
		"a b":                    `character ' '`,
		"a\tb":                   "control character U+0009",
		"a\x7fb":                 "control character U+007F",
		"a~1":                    `character '~'`,
		"a^1":                    `character '^'`,
		"a:b":                    `character ':'`,
		"a?":                     `character '?'`,
		"a*":                     `character '*'`,
		"a[0]":                   `character '['`,
		`a\b`:                    `character '\\'`,
		"a@{1}":                  `character '@'`,
		"héllo":                  `character 'é'`,
	} {
		err := CheckName("node", name)
		if err == nil {
			t.Errorf("CheckName(%q) = nil, want an error saying %s", name, why)
			continue
		}
		if !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "invalid node name") {
			t.Errorf("CheckName(%q) = %v, want it to say %s", name, err, why)
		}
	}
}

// TestCheckNamesInSpec checks app names, node names and target lists (failed
// before: "web.lock", "a..b", "web." and any list entry validated).
func TestCheckNamesInSpec(t *testing.T) {
	long := strings.Repeat("n", 64)
	got := loadErrors(t, map[string]string{"f.cue": `package fleet
apps: [Name=_]: {version: "1.0.0", artifact: url: "https://r.example/a.tgz", health: tcp: "h:1"}
apps: "web.lock": {}
apps: "a..b": {}
apps: "web.": {}
apps: ok: nodes: ["../x", "a/b", "good", "` + long + `"]
nodes: "a b": {}
nodes: "..": {}
`})
	want := []string{
		`f.cue:3:7: apps."web.lock": invalid app name "web.lock": ends in ".lock"`,
		`f.cue:4:7: apps."a..b": invalid app name "a..b": contains ".."`,
		`f.cue:5:7: apps."web.": invalid app name "web.": ends in "."`,
		`f.cue:6:19: apps.ok.nodes[0]: invalid node name "../x": starts with '.'`,
		`f.cue:6:27: apps.ok.nodes[1]: invalid node name "a/b": character '/' at byte 1`,
		`f.cue:6:42: apps.ok.nodes[3]: invalid node name "` + long + `": 64 bytes long, more than 63`,
		`f.cue:7:8: nodes."a b": invalid node name "a b": character ' ' at byte 1`,
		`f.cue:8:8: nodes."..": invalid node name "..": starts with '.'`,
	}
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]+"; want "+NameRule) {
			t.Errorf("error %d:\n%s\nwant:\n%s; want %s", i, got[i], want[i], NameRule)
		}
	}
}
