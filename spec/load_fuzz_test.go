package spec

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// FuzzLoadFiles loads any two spec files (the example fleet's apps.cue and
// nodes.cue are among the seeds). LoadFiles must not panic, must give the
// same fleet or the same error twice, and a fleet it returns must hold what
// docs/spec.md promises: names usable as Git ref components (they become
// refs/reconciler/rollouts/<app>, .../leases/<app>/<slot> and
// .../nodes/<node>), semantic versions, batch sizes and canary counts of at
// least 1, known strategies, non-negative durations and retries, exactly one
// health check, and artifact URLs.
func FuzzLoadFiles(f *testing.F) {
	apps, err := os.ReadFile("../examples/fleet/apps.cue")
	if err != nil {
		f.Fatal(err)
	}
	nodes, err := os.ReadFile("../examples/fleet/nodes.cue")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(apps), string(nodes))
	for _, s := range []string{
		`apps: web: {version: "1.0.0", artifact: url: "https://r.example.com/web.tar.gz", health: tcp: "127.0.0.1:80"}`,
		`apps: web: {version: "v2.0.0-rc.1+b7", artifact: {url: "file:///srv/web.tar.gz", sha256: "` + "4f2c9a0b6d1e8f7a3c5b2d4e6f8a0c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a" + `"}, health: exec: ["bin/check"], rollout: {strategy: "canary", canary: count: 2}, nodes: ["n1", "n2"]}`,
		`apps: "web.lock": {version: "1.0.0", artifact: url: "https://r.example.com/w", health: tcp: "h:1"}`,
		`apps: "web.": {version: "1.0.0", artifact: url: "https://r.example.com/w", health: tcp: "h:1"}`,
		`apps: "a..b": {version: "1.0.0", artifact: url: "https://r.example.com/w", health: tcp: "h:1"}`,
		`import "strings"
apps: [N=_]: artifact: url: "https://r.example.com/\(strings.ToLower(N)).tar.gz"
apps: Web: {version: "1.0.0", health: http: "http://127.0.0.1:${PORT}/", rollout: {batchSize: 0, batchDelay: "-1s"}}`,
		`apps: web: {version: "1.0", artifact: url: "ftp://x", health: {}, nodes: {tier: "edge"}, paused: "yes"}`,
		`package other
nodes: "n.lock": labels: tier: "edge"`,
	} {
		f.Add(s, "")
	}
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	absURL := regexp.MustCompile(`^[a-z][a-z0-9+.-]*://.`)
	f.Fuzz(func(t *testing.T, apps, nodes string) {
		files := map[string][]byte{"apps.cue": []byte(apps), "nodes.cue": []byte(nodes)}
		fl, err := LoadFiles(files)
		fl2, err2 := LoadFiles(files)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("LoadFiles is not deterministic: %v, then %v", err, err2)
		}
		if err != nil {
			return
		}
		b, err := json.Marshal(fl)
		if err != nil {
			t.Fatalf("fleet does not encode: %v", err)
		}
		if b2, _ := json.Marshal(fl2); string(b) != string(b2) {
			t.Fatalf("LoadFiles is not deterministic:\n%s\n%s", b, b2)
		}
		bad := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("LoadFiles accepted a fleet with "+format+"\napps.cue:\n%s\nnodes.cue:\n%s", append(args, apps, nodes)...)
		}
		for name := range fl.Nodes {
			if err := plumbing.ReferenceName("refs/reconciler/nodes/" + name).Validate(); err != nil {
				bad("node name %q, which cannot be a ref component", name)
			}
		}
		for name, a := range fl.Apps {
			if plumbing.ReferenceName("refs/reconciler/leases/"+name+"/0").Validate() != nil ||
				plumbing.ReferenceName("refs/reconciler/rollouts/"+name).Validate() != nil {
				bad("app name %q, which cannot be a ref component", name)
			}
			r, h := a.Rollout, a.Health
			switch {
			case a.Name != name:
				bad("app %q named %q", name, a.Name)
			case !validVersion(a.Version):
				bad("apps.%s.version %q", name, a.Version)
			case !absURL.MatchString(a.Artifact.URL) || !absURL.MatchString(a.Artifact.Signature):
				bad("apps.%s.artifact %+v", name, a.Artifact)
			case a.Artifact.SHA256 != "" && !hex64.MatchString(a.Artifact.SHA256):
				bad("apps.%s.artifact.sha256 %q", name, a.Artifact.SHA256)
			case r.BatchSize < 1 || r.Canary.Count < 1:
				bad("apps.%s.rollout batchSize %d, canary.count %d", name, r.BatchSize, r.Canary.Count)
			case r.Strategy != StrategyRolling && r.Strategy != StrategyCanary && r.Strategy != StrategyAllAtOnce:
				bad("apps.%s.rollout.strategy %q", name, r.Strategy)
			case r.OnUnreachable != OnUnreachableSkip && r.OnUnreachable != OnUnreachableFail:
				bad("apps.%s.rollout.onUnreachable %q", name, r.OnUnreachable)
			case r.Approve != ApproveNone && r.Approve != ApproveAfterCanary && r.Approve != ApproveEachWave:
				bad("apps.%s.rollout.approve %q", name, r.Approve)
			case r.BatchDelay.Duration < 0 || r.NodeTimeout.Duration < 0 || r.Canary.Monitor.Duration < 0 || h.RetryDelay.Duration < 0:
				bad("apps.%s: a negative duration: %+v %+v", name, r, h)
			case h.Retries < 0 || h.RequiredStatus != RequiredStatusOK && h.RequiredStatus != RequiredStatusDegr:
				bad("apps.%s.health %+v", name, h)
			case countSet(h.HTTP != "", h.TCP != "", len(h.Exec) > 0) != 1:
				bad("apps.%s.health %+v: want exactly one of http, tcp and exec", name, h)
			case !a.Nodes.All && a.Nodes.Names == nil && a.Nodes.Selector == nil:
				bad("apps.%s.nodes selecting nothing", name)
			}
		}
	})
}

func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
