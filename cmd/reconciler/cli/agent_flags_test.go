package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent"
)

// TestAgentTrackedBranch: the agent takes --tracked-branch like every other
// command; --branch still works, with a deprecation warning. --once
// --output json prints the node's /healthz body. Before, the agent knew
// only --branch and had no JSON output.
func TestAgentTrackedBranch(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs agent passes that start hook processes")
	}
	f := newFixture(t, "1.0.0", "2.0.0")
	tip := f.push("staging", f.spec("2.0.0", ""), "staging: hello 2.0.0")
	for i, flag := range []string{"--tracked-branch", "--branch"} {
		node := []string{"n1", "n2"}[i] // both in the first wave
		r := f.run("agent", "--once", "--repo", f.repo, "--node", node, "--state-dir", t.TempDir(),
			"--trust-key", f.pub, "--listen", "", "--log-format", "json", flag, "staging", "--output", "json")
		if r.code != 0 {
			t.Fatalf("agent %s staging: exit %d\n%s", flag, r.code, r.stderr)
		}
		var hz agent.Healthz
		if err := json.Unmarshal([]byte(r.stdout), &hz); err != nil {
			t.Fatalf("agent --once --output json: %v\n%s", err, r.stdout)
		}
		if hz.Status != agent.HealthOK || hz.Report.SpecCommit != tip || hz.Report.Apps["hello"].Version != "2.0.0" {
			t.Errorf("%s staging: %+v", flag, hz)
		}
		deprecated := strings.Contains(r.stderr, "--branch is deprecated, use --tracked-branch")
		if deprecated != (flag == "--branch") {
			t.Errorf("%s: deprecation warning %v\n%s", flag, deprecated, r.stderr)
		}
	}
	if r := f.run("agent", "--repo", f.repo, "--node", "n1", "--state-dir", t.TempDir(), "--trust-key", f.pub,
		"--output", "json"); r.code != exitUsage || !strings.Contains(r.stderr, "use it with --once") {
		t.Errorf("--output json without --once: exit %d\n%s", r.code, r.stderr)
	}
}

// TestAgentSwitchAbortFitsTheLease: a --switch-abort that leaves a lease
// no validity to switch in is a usage error naming both flags (issue 17,
// the validity rule); the default fits any --lease-ttl.
func TestAgentSwitchAbortFitsTheLease(t *testing.T) {
	for _, tc := range []struct {
		ttl, abort string
		ok         bool
	}{{"3s", "", true}, {"20s", "5s", true}, {"3s", "5s", false}, {"20s", "12s", false}} {
		o := &agentOptions{repo: "r", node: "n", stateDir: "s", trustKeys: []string{"k"}, coordination: "lease",
			poll: time.Second, logFormat: "auto", output: "text"}
		o.leaseTTL, _ = time.ParseDuration(tc.ttl)
		if tc.abort != "" {
			o.switchAbort, _ = time.ParseDuration(tc.abort)
		}
		err := o.validate()
		bad := err != nil && strings.Contains(err.Error(), "--switch-abort")
		if bad == tc.ok {
			t.Errorf("--lease-ttl %s --switch-abort %q: %v", tc.ttl, tc.abort, err)
		}
	}
}
