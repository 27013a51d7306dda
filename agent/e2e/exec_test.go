package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// packHello packs and signs examples/releases/hello-exec at version v; a
// broken one carries the file that makes its health hook fail.
func packHello(t *testing.T, v string, broken bool) {
	stage := t.TempDir()
	if err := os.CopyFS(stage, os.DirFS("../../examples/releases/hello-exec")); err != nil {
		t.Fatal(err)
	}
	if broken {
		if err := os.WriteFile(filepath.Join(stage, "broken"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The spec's exec health check runs a program of the release; the
	// fleet repo passes it the state directory as an argument.
	if err := os.WriteFile(filepath.Join(stage, "hooks", "check.sh"), []byte("#!/bin/sh\ntest -s \"$1/active\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Pack(stage, "hello", v); err != nil {
		t.Fatal(err)
	}
}

func helloCUE(version string) map[string]string {
	return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet

apps: hello: {
	version: %q
	artifact: url: "file://%s/hello-\(version).tar.gz"
	health: {
		exec:       ["hooks/check.sh", "${HELLO_STATE}"]
		retryDelay: "100ms"
	}
}
`, version, lab.Releases)}
}

// The exec driver runs the example release's hooks through the agent, and
// rolls back to the previous version when the new one's health hook fails.
func TestAgentExecDriver(t *testing.T) {
	packHello(t, "1.0.0", false)
	packHello(t, "2.0.0", false)
	packHello(t, "3.0.0", true)
	helloState := t.TempDir()
	n := &node{stateDir: t.TempDir(), healthz: "127.0.0.1:" + freePort(t), log: &bytes.Buffer{}}
	n.repo = gittest.NewBare(t, helloCUE("1.0.0"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", n.log)
		}
	})
	active := func() string {
		b, _ := os.ReadFile(filepath.Join(helloState, "active"))
		return strings.TrimSpace(string(b))
	}
	hello := func() reconciler.AppReport { return n.reportApp("hello") }
	n.start(t, "--var", "HELLO_STATE="+helloState)
	gittest.Eventually(t, within, func() bool { return active() == "1.0.0" && hello().State == reconciler.AppHealthy }, "hello 1.0.0 active")

	gittest.PushFiles(t, n.repo, "main", helloCUE("2.0.0"), "hello 2.0.0")
	gittest.Eventually(t, within, func() bool { return active() == "2.0.0" && hello().Version == "2.0.0" }, "hello 2.0.0 active")

	gittest.PushFiles(t, n.repo, "main", helloCUE("3.0.0"), "hello 3.0.0 (broken)")
	gittest.Eventually(t, within, func() bool { return hello().State == reconciler.AppFailed }, "hello 3.0.0 failed")
	if r := hello(); active() != "2.0.0" || r.Version != "2.0.0" || !strings.Contains(r.Error, "is broken") {
		t.Fatalf("after the broken version: active %q, report %+v", active(), r)
	}
}
