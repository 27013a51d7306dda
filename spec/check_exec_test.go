package spec

import (
	"strings"
	"testing"
)

// TestHealthExecNamesAProgramOfTheRelease: the fleet repo may not choose a
// program outside the release for a health check. Each refused case
// validated before and ran on every targeted node.
func TestHealthExecNamesAProgramOfTheRelease(t *testing.T) {
	for _, ok := range []string{`["bin/check"]`, `["check", "--quick"]`, `["bin/check", "${PORT}", "/etc/x"]`, `["libexec/a.b/c-d"]`} {
		if got := loadErrors(t, map[string]string{"f.cue": header + "apps: x: {version: \"1.0.0\", health: exec: " + ok + "}\n"}); got != nil {
			t.Errorf("exec: %s: %v, want valid", ok, got)
		}
	}
	for exec, why := range map[string]string{
		`["/bin/sh", "-c", "curl -f localhost"]`: `got "/bin/sh", an absolute path runs a program outside the release`,
		`["/usr/local/bin/ledger", "check"]`:     `got "/usr/local/bin/ledger", an absolute path`,
		`["~/bin/x"]`:                            `got "~/bin/x", an absolute path`,
		`["../../bin/sh", "-c", "x"]`:            `got "../../bin/sh", ".." leaves the release`,
		`["bin/../../sh"]`:                       `got "bin/../../sh", ".." leaves the release`,
		`[".."]`:                                 `got "..", ".." leaves the release`,
		`["${BIN}", "-c", "x"]`:                  `got "${BIN}", the program cannot come from a variable`,
		`["bin/${FLAVOR}"]`:                      `got "bin/${FLAVOR}", the program cannot come from a variable`,
		`["./check"]`:                            `got "./check", not a clean path (write "check")`,
		`["bin//check"]`:                         `got "bin//check", not a clean path (write "bin/check")`,
		`["."]`:                                  `got ".", not a clean path`,
		`[""]`:                                   `got "", empty`,
		`["bin\\check"]`:                         `got "bin\\check", a backslash or NUL`,
		`["-x"]`:                                 `got "-x", starts with "-"`,
	} {
		got := loadErrors(t, map[string]string{"f.cue": header + "apps: x: {version: \"1.0.0\", health: exec: " + exec + "}\n"})
		if len(got) != 1 || !strings.HasPrefix(got[0], "f.cue:12:44: apps.x.health.exec[0]: "+why) ||
			!strings.HasSuffix(got[0], `want a program of the release, as a path relative to the release directory such as "bin/check" (a shell command goes in a script shipped in the release: exec: ["bin/health.sh"])`) {
			t.Errorf("exec: %s:\n%s\nwant f.cue:12:44: apps.x.health.exec[0]: %s...", exec, strings.Join(got, "\n"), why)
		}
	}
}
