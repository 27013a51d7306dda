package reconciler

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

func TestStatusOf(t *testing.T) {
	rec := append(started([]string{"a", "b"}, []string{"c"}),
		ev(EventNodeDone, node("a")), ev(EventNodeFailed, node("b"), func(e *Event) { e.Reason = "health check failed" }))
	rec[0].Time = t0
	reports := map[string]NodeReport{
		"a": {Apps: map[string]AppReport{"web": {Version: "1.1.0", State: AppHealthy}}},
		"b": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppFailed}}},
		"c": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppWaiting}}},
		"f": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppHealthy}}},
	}
	leases := []Lease{lease(0, "c", 0), {App: "web", Slot: 1}}
	st := StatusOf(testApp(), rec, reports, leases, t0.Add(90*time.Second))
	if st.State != StateProgressing || st.Target != "1.1.0" || st.Elapsed != 90*time.Second {
		t.Fatalf("status = %+v", st)
	}
	want := [][]string{{"upgraded", "failed"}, {AppWaiting}}
	for k, w := range want {
		for i, s := range w {
			if got := st.Waves[k][i].State; got != s {
				t.Errorf("wave %d node %d state %q, want %q", k, i, got, s)
			}
		}
	}
	if st.Waves[0][1].Reason != "health check failed" {
		t.Errorf("reason = %q", st.Waves[0][1].Reason)
	}
	if len(st.Leases) != 1 || st.Leases[0].Holder != "c" {
		t.Errorf("leases = %+v", st.Leases)
	}
	if len(st.Others) != 1 || st.Others[0].Node != "f" {
		t.Errorf("others = %+v", st.Others)
	}
}

func TestStatusStates(t *testing.T) {
	paused := testApp(func(a *spec.App) { a.Paused = true })
	for _, tt := range []struct {
		rec  []Event
		app  spec.App
		want string
	}{
		{nil, testApp(), StateNone},
		{started([]string{"a"}), testApp(), StateProgressing},
		{started([]string{"a"}), paused, StatePaused},
		{append(started([]string{"a"}), ev(EventCompleted)), testApp(), StateComplete},
		{append(started([]string{"a"}), ev(EventFailed)), testApp(), StateFailed},
		{append(started([]string{"a"}), ev(EventFailed), ev(EventRolledBack)), testApp(), StateRolledBack},
	} {
		if got := StatusOf(tt.app, tt.rec, nil, nil, t0).State; got != tt.want {
			t.Errorf("state = %q, want %q (record %v)", got, tt.want, tt.rec)
		}
	}
}

func TestAudit(t *testing.T) {
	reports := map[string]NodeReport{
		"b": {Apps: map[string]AppReport{"web": {Version: "1.1.0"}}},
		"a": {Apps: map[string]AppReport{"web": {Version: "1.1.0"}}},
		"c": {Apps: map[string]AppReport{"web": {Version: "1.0.0"}}},
		"d": {Apps: map[string]AppReport{"db": {Version: "9"}}},
		// The runtime says what really runs.
		"e": {Apps: map[string]AppReport{"web": {Version: "1.1.0", Releases: []RuntimeRelease{
			{Version: "1.1.0", Status: "permanent"}, {Version: "1.0.0", Status: "current"}}}}},
	}
	got := Audit("web", reports)
	if len(got) != 2 || len(got["1.1.0"]) != 2 || got["1.1.0"][0] != "a" || len(got["1.0.0"]) != 2 || got["1.0.0"][1] != "e" {
		t.Fatalf("audit = %v", got)
	}
}

func TestInventoryMergesLabels(t *testing.T) {
	inv := InventoryOf(map[string]spec.Node{"a": {Labels: map[string]string{"region": "eu", "tier": "web"}}},
		map[string]NodeReport{"a": {Labels: map[string]string{"region": "us"}}, "b": {}})
	if len(inv) != 2 || inv[0].Labels["region"] != "us" || inv[0].Labels["tier"] != "web" || inv[1].Name != "b" {
		t.Fatalf("inventory = %+v", inv)
	}
}

func TestDiff(t *testing.T) {
	base := &spec.Fleet{Apps: map[string]spec.App{
		"web": testApp(func(a *spec.App) { a.Version = "1.0.0" }),
		"old": testApp(func(a *spec.App) { a.Name = "old" }),
		"db":  testApp(func(a *spec.App) { a.Name = "db" }),
	}}
	head := &spec.Fleet{Apps: map[string]spec.App{
		"web": testApp(func(a *spec.App) { a.Rollout.BatchDelay.Duration = 30 * time.Second }),
		"new": testApp(func(a *spec.App) { a.Name = "new"; a.Nodes = spec.Targets{Names: []string{"a", "ghost"}} }),
		"db":  testApp(func(a *spec.App) { a.Name = "db" }),
	}}
	changes := Diff(base, head, inventory("a", "b", "c"), DiffOptions{
		FailedTargets: map[string]map[string]string{"web": {"1.1.0": "health check failed on b"}},
	})
	if len(changes) != 3 {
		t.Fatalf("changes = %+v", changes)
	}
	byApp := map[string]AppChange{}
	for _, c := range changes {
		byApp[c.App] = c
	}
	web := byApp["web"]
	if web.Kind != ChangeUpgrade || web.From != "1.0.0" || web.To != "1.1.0" || len(web.Plan.Waves) != 2 {
		t.Fatalf("web = %+v", web)
	}
	// 2 waves × 10s + 1 × 30s delay.
	if web.Estimate != 50*time.Second {
		t.Errorf("estimate = %v", web.Estimate)
	}
	if len(web.Warnings) != 1 {
		t.Errorf("web warnings = %v", web.Warnings)
	}
	if byApp["old"].Kind != ChangeRemoved || byApp["new"].Kind != ChangeAdded {
		t.Errorf("kinds: old %s new %s", byApp["old"].Kind, byApp["new"].Kind)
	}
	if w := byApp["new"].Warnings; len(w) != 1 {
		t.Errorf("new warnings = %v", w)
	}
}

func TestStatusNamesNodesRefusingTheTip(t *testing.T) {
	reports := map[string]NodeReport{
		"a": {Untrusted: "untrusted: 1f2e: unsigned commit"},
		"b": {},
	}
	st := StatusOf(testApp(), nil, reports, nil, t0)
	if len(st.Untrusted) != 1 || st.Untrusted["a"] != "untrusted: 1f2e: unsigned commit" {
		t.Fatalf("untrusted = %v", st.Untrusted)
	}
}
