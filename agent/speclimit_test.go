package agent

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/spec/isolate"
)

// TestMain lets this test binary be the spec evaluation child
// (isolate.Serve) when a test's isolate.Loader re-executes it.
func TestMain(m *testing.M) {
	if os.Getenv("RECONCILER_AGENT_TEST_EVAL_SPEC") == "1" {
		if err := isolate.Serve(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHostileSpecIsRefusedWithinTheBound: with the subprocess loader, the
// quadratic comprehensions of issue 18 §8 (22-54 s in-process) are refused
// at the deadline like any invalid spec: the node keeps its version,
// reports the limit, does not evaluate the same commit again, and moves on
// at the next valid commit.
func TestHostileSpecIsRefusedWithinTheBound(t *testing.T) {
	const timeout = 2 * time.Second
	h := newHarness(t, nil, "web@1.0.0")
	h.a.cfg.SpecLoader = isolate.Loader{Path: os.Args[0], Args: []string{},
		Env: []string{"RECONCILER_AGENT_TEST_EVAL_SPEC=1"}, Timeout: timeout,
		// Memory to spare: this test is about the deadline, and a fast machine
		// maps the default 1 GiB before it.
		Memory: 16 << 30}
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "1.0.0" {
		t.Fatalf("valid spec through the child: converged %v, %+v (spec error %q)", ok, r.Apps, r.SpecError)
	}
	app := `apps: web: {version: "2.0.0", artifact: url: "https://r.example/web.tgz", health: exec: ["bin/check"], nodes: %s}`
	for _, src := range []string{
		"nodes: {for i in list.Range(0, 40000, 1) {\"n\\(i)\": labels: region: \"eu\"}}\n" + fmt.Sprintf(app, `"all"`),
		"nodes: {for i in list.Range(0, 100000, 1) {\"n\\(i)\": {}}}\n" + fmt.Sprintf(app, `"all"`),
		"nodes: n1: {}\n" + fmt.Sprintf(app, "[for i in list.Range(0, 100000, 1) {\"n\\(i)\"}]"),
	} {
		gittest.PushFiles(t, h.repo, "main", map[string]string{"fleet.cue": "package fleet\nimport \"list\"\n" + src + "\n"}, "hostile")
		start := time.Now()
		r, ok := h.reconcile(t)
		took := time.Since(start)
		if ok || r.Apps["web"].Version != "1.0.0" || len(h.drv.switches) != 1 ||
			!strings.Contains(r.SpecError, "not applied: evaluation took more than 2s (limit --spec-timeout;") {
			t.Fatalf("hostile spec: converged %v, apps %+v, switches %v, spec error %q", ok, r.Apps, h.drv.switches, r.SpecError)
		}
		if took > timeout+3*time.Second {
			t.Errorf("hostile spec refused after %v, limit %v", took, timeout)
		}
		start = time.Now()
		if r2, _ := h.reconcile(t); r2.SpecError != r.SpecError || time.Since(start) > timeout/2 {
			t.Errorf("second pass on the same commit took %v (evaluated again?), spec error %q", time.Since(start), r2.SpecError)
		}
		t.Logf("refused after %v: %s", took, r.SpecError)
	}
	h.push(t, "web@2.0.0")
	if r, ok := h.reconcile(t); !ok || r.Apps["web"].Version != "2.0.0" || r.SpecError != "" {
		t.Fatalf("next valid commit: converged %v, %+v (spec error %q)", ok, r.Apps, r.SpecError)
	}
}
