package cli

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run "reconciler" in-process as a real command.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "__eval-spec" {
		// A test that runs a command in-process (Main, run) which evaluates
		// specs in its child re-executes this binary (spec/isolate): be
		// that child, not another run of every test.
		os.Exit(Main())
	}
	testscript.Main(m, map[string]func(){
		"reconciler": func() { os.Exit(Main()) },
	})
}

// TestScripts runs the CLI scripts in testdata/script (one .txtar per behaviour).
// Set UPDATE_SCRIPTS=1 to rewrite their expected output.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			// Tests never see the developer's git configuration.
			e.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
			e.Setenv("GIT_CONFIG_NOSYSTEM", "1")
			if root, err := os.Getwd(); err == nil {
				e.Setenv("EXAMPLES", root+"/../../../examples")
			}
			return nil
		},
	})
}
