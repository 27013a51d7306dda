package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

const rollbackFleet = `package fleet

apps: web: {
	version: %q
	artifact: url: "https://releases.example.com/web-\(version).tar.gz"
	health: http: "http://127.0.0.1:8080/health"
}
`

// TestAgentRollbackRestoresWhatTheFleetRan (issue 17, bug 3): the fleet
// ran 1.0.0; 1.1.0 and 1.2.0 were committed before any node moved; the
// rollout of 1.2.0 (From 1.0.0) failed. The agent's rollback commit restores
// 1.0.0, not 1.1.0 (never deployed): before, rollbackCommitter dropped To
// and the failed commit's parent came back, whose rollout failed and was
// rolled back to 1.2.0, and so on.
func TestAgentRollbackRestoresWhatTheFleetRan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bare := gittest.NewBare(t, map[string]string{"fleet.cue": strings.Replace(rollbackFleet, "%q", `"1.0.0"`, 1)})
	gittest.PushFiles(t, bare, "main", map[string]string{"fleet.cue": strings.Replace(rollbackFleet, "%q", `"1.1.0"`, 1)}, "web 1.1.0")
	failed := gittest.PushFiles(t, bare, "main", map[string]string{"fleet.cue": strings.Replace(rollbackFleet, "%q", `"1.2.0"`, 1)}, "web 1.2.0")
	d, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: bare, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	commit, err := rollbackCommitter(d, "n1")(ctx, fleetrepo.RollbackRequest{App: "web", Failed: plumbing.NewHash(failed),
		Version: "1.2.0", To: "1.0.0", Node: "n1", Reason: "failed on n1: health check failed"})
	if err != nil {
		t.Fatal(err)
	}
	if got := gittest.Git(t, bare, "show", "main:fleet.cue"); !strings.Contains(got, `version: "1.0.0"`) {
		t.Fatalf("the rollback commit %s restored:\n%s", commit, got)
	}
	msg := gittest.Git(t, bare, "log", "-1", "--format=%B", "main")
	if !strings.Contains(msg, "Reconciler-From: 1.2.0") || !strings.Contains(msg, "Reconciler-To: 1.0.0") {
		t.Fatalf("rollback message:\n%s", msg)
	}
}
