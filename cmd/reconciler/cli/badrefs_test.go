package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// plantRef commits files (with real git) on no branch and points ref of
// the bare repo at it.
func plantRef(t *testing.T, bare, ref string, files map[string]string) {
	t.Helper()
	work := t.TempDir()
	gittest.Git(t, work, "init", "-q")
	for name, body := range files {
		must(t, os.WriteFile(filepath.Join(work, name), []byte(body), 0o644))
		gittest.Git(t, work, "add", name)
	}
	gittest.Git(t, work, "commit", "-q", "-m", "garbage")
	gittest.Git(t, work, "push", "-q", bare, "HEAD:"+ref)
}

// TestBadSharedRefsAreNamed: with a garbage node report, a garbage lease
// and a garbage rollout event in the fleet repo, status and history work
// and name each bad ref on stderr (status --output json in its warnings),
// leases warns, and leases break overwrites the garbage lease. Before,
// status failed on the report ("read node reports: ..."), leases break
// returned the decode error, and history printed "-" without a word.
func TestBadSharedRefsAreNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs git")
	}
	f := newFixture(t, "1.0.0")
	plantRef(t, f.repo, "refs/reconciler/nodes/junk", map[string]string{"report.json": "not json"})
	plantRef(t, f.repo, "refs/reconciler/leases/hello/0", map[string]string{"lease.json": "\x00"})
	// Beyond the batch size (2) now: left from a larger one, and garbage.
	plantRef(t, f.repo, "refs/reconciler/leases/hello/5", map[string]string{"lease.json": "{"})
	plantRef(t, f.repo, "refs/reconciler/rollouts/hello", map[string]string{"event.json": `{"foo": 1}`})

	r := f.run("status", "--repo", f.repo)
	if r.code != 0 {
		t.Fatalf("status: exit %d\n%s", r.code, r.stderr)
	}
	for _, ref := range []string{"nodes/junk", "leases/hello/0", "rollouts/hello"} {
		if !strings.Contains(r.stderr, "skipped unreadable shared ref refs/reconciler/"+ref) {
			t.Errorf("status does not name %s:\n%s", ref, r.stderr)
		}
	}
	if r = f.run("status", "--repo", f.repo, "--output", "json"); r.code != 0 || !strings.Contains(r.stdout, "refs/reconciler/nodes/junk") {
		t.Errorf("status --output json: exit %d, no warning naming the bad report:\n%s", r.code, r.stdout)
	}
	if r = f.run("history", "--repo", f.repo); r.code != 0 || !strings.Contains(r.stderr, "refs/reconciler/rollouts/hello") {
		t.Errorf("history: exit %d, no warning naming the garbage event:\n%s", r.code, r.stderr)
	}
	if r = f.run("leases", "hello", "--repo", f.repo); r.code != 0 || !strings.Contains(r.stderr, "unreadable lease refs/reconciler/leases/hello/0") {
		t.Errorf("leases: exit %d\n%s", r.code, r.stderr)
	}
	if r = f.run("leases", "break", "hello", "0", "--repo", f.repo); r.code != 0 {
		t.Fatalf("leases break over a garbage lease: exit %d\n%s", r.code, r.stderr)
	}
	if r = f.run("leases", "break", "hello", "5", "--repo", f.repo); r.code != 0 {
		t.Fatalf("leases break over a garbage lease beyond the batch size: exit %d\n%s", r.code, r.stderr)
	}
	if r = f.run("leases", "hello", "--repo", f.repo); r.code != 0 || strings.Contains(r.stderr, "unreadable") {
		t.Errorf("leases after the break: exit %d\n%s", r.code, r.stderr)
	}
}
