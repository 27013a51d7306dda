package cli

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

// TestNoSecretsInOutput plants credentials in every URL the fleet repo and
// the command line give a node (artifact and signature URLs with userinfo,
// a token as user and presigned query parameters, a health URL, --repo),
// runs an agent pass and the CLI, and greps everything they printed or
// stored: the agent's log, its JSON output, /healthz's report, every
// shared ref of the fleet repo (node reports, rollout records, leases) and
// the CLI's errors. The artifact's fetch error, the health check's error
// and status --repo's error all carried the secrets before internal/redact.
func TestNoSecretsInOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an agent pass that starts hook processes")
	}
	f := newFixture(t, "1.0.0")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".sig") {
			fmt.Fprint(w, "c2lnbmF0dXJl") // read, then the artifact is 404
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	secrets := []string{"s3cr3tA", "ghp_s3cr3tB", "s3cr3tC", "s3cr3tD", "s3cr3tE", "s3cr3tF", "s3cr3tG", "s3cr3tH"}
	spec := fmt.Sprintf(`package fleet

nodes: n1: {}

apps: dl: {
	version: "1.0.0"
	artifact: url: "http://artuser:s3cr3tA@%[1]s/dl-1.0.0.tar.gz?X-Amz-Signature=s3cr3tC&x=1"
	artifact: signature: "http://ghp_s3cr3tB@%[1]s/dl.sig?token=s3cr3tD"
	health: exec: ["hooks/ok.sh"]
}
apps: hello: {
	version: "1.0.0"
	artifact: url: "file://%[2]s/hello-1.0.0.tar.gz"
	health: http: "http://huser:s3cr3tE@127.0.0.1:1/health?access_token=s3cr3tF"
	health: retries: 0
	rollout: rollbackOnFail: false
}
`, host, f.releases)
	f.push("main", map[string]string{"fleet.cue": spec}, "plant secrets")

	var out strings.Builder
	r := f.run("agent", "--once", "--repo", f.repo, "--node", "n1", "--state-dir", t.TempDir(),
		"--trust-key", f.pub, "--listen", "", "--log-format", "json", "--output", "json", "--coordination", "none")
	fmt.Fprintf(&out, "agent stdout:\n%s\nagent stderr:\n%s\n", r.stdout, r.stderr)
	if !strings.Contains(r.stderr, "REDACTED") {
		t.Errorf("the agent's log names no redacted URL: did the pass fetch?\n%s", r.stderr)
	}
	refs, err := exec.Command("git", "--git-dir", f.repo, "log", "-p", "--glob=refs/reconciler/*").CombinedOutput()
	must(t, err)
	fmt.Fprintf(&out, "refs:\n%s\n", refs)
	if !strings.Contains(string(refs), `"node": "n1"`) || !strings.Contains(string(refs), "REDACTED") {
		t.Errorf("no node report naming a redacted URL in the fleet repo:\n%s", refs)
	}
	for _, args := range [][]string{
		{"status", "--repo", "http://op:s3cr3tG@127.0.0.1:1/fleet.git?private_token=s3cr3tH"},
		{"status", "--repo", "http://op:s3cr3tG@127.0.0.1:1/fleet.git", "--output", "json"},
		{"agent", "--once", "--repo", "http://ghp_s3cr3tB@127.0.0.1:1/fleet.git", "--node", "n1",
			"--state-dir", t.TempDir(), "--trust-key", f.pub, "--listen", ""},
	} {
		r := f.run(args...)
		if r.code == 0 {
			t.Errorf("%s: exit 0, want a connection error", args[0])
		}
		fmt.Fprintf(&out, "%s stdout:\n%s\nstderr:\n%s\n", args[0], r.stdout, r.stderr)
	}
	all := out.String()
	for _, s := range secrets {
		if strings.Contains(all, s) {
			i := strings.Index(all, s)
			t.Errorf("secret %q leaked: ...%s...", s, all[max(0, i-200):min(len(all), i+100)])
		}
	}
}
