package reconciler

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// TestStatusTellsTheTruth: after a failed canary rolled back, the canary
// serving the previous version healthily is rolled_back (with the failed
// version and reason), nodes of later waves are not_started, a node in the
// middle of a switch is switching. Before, the canary showed "failed" and
// the others "waiting" or "healthy".
func TestStatusTellsTheTruth(t *testing.T) {
	rec := append(started([]string{"a"}, []string{"b", "c"}),
		ev(EventNodeFailed, node("a"), func(e *Event) { e.Reason = "health check failed: 503" }),
		ev(EventFailed, node("a"), func(e *Event) { e.Reason = "health check failed: 503" }),
		ev(EventRolledBack, func(e *Event) { e.RollbackCommit = "r1"; e.Reason = "health check failed: 503" }))
	reports := map[string]NodeReport{
		"a": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppHealthy}}},
		"b": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppHealthy}}},
		"c": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppWaiting, Error: "wave 1 opens in 3.1s"}}},
	}
	app := testApp(func(a *spec.App) { a.Version = "1.0.0" })
	st := StatusOf(app, rec, reports, nil, t0)
	if st.State != StateRolledBack {
		t.Fatalf("state %q", st.State)
	}
	canary := st.Waves[0][0]
	if canary.State != NodeRolledBack || !strings.Contains(canary.Reason, "1.1.0 failed: health check failed: 503") {
		t.Errorf("canary: %+v, want rolled_back with the failed version and reason", canary)
	}
	for _, n := range st.Waves[1] {
		if n.State != NodeNotStarted {
			t.Errorf("%s: %q, want not_started", n.Node, n.State)
		}
	}
	// A canary whose version runs nothing after its failure is failed.
	reports["a"] = NodeReport{Apps: map[string]AppReport{"web": {State: AppFailed}}}
	if got := StatusOf(app, rec, reports, nil, t0).Waves[0][0].State; got != NodeFailed {
		t.Errorf("canary running nothing: %q, want failed", got)
	}
	// Mid-rollout, a node switching says so.
	rec2 := started([]string{"a", "b"})
	reports["a"] = NodeReport{Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppSwitching, Target: "1.1.0"}}}
	if got := StatusOf(testApp(), rec2, reports, nil, t0).Waves[0][0].State; got != AppSwitching {
		t.Errorf("node mid-switch: %q, want switching", got)
	}
}

// TestStatusCountsDownBatchDelay: between waves, status says when the next
// wave opens (1-based, like the columns) and counts down; while paused it
// counts nothing down.
func TestStatusCountsDownBatchDelay(t *testing.T) {
	rec := append(started([]string{"a"}, []string{"b"}), ev(EventNodeDone, node("a")),
		ev(EventWaveDone, wave(0), func(e *Event) { e.Time = t0 }))
	rec[0].Options.BatchDelay = 15 * time.Second
	reports := map[string]NodeReport{
		"a": {Apps: map[string]AppReport{"web": {Version: "1.1.0", State: AppHealthy}}},
		"b": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppWaiting, Error: "wave 1 opens in 14.9s"}}},
	}
	st := StatusOf(testApp(), rec, reports, nil, t0.Add(3*time.Second))
	if st.NextWave == nil || st.NextWave.Wave != 2 || st.NextWave.OpensIn != 12*time.Second {
		t.Fatalf("next wave %+v, want wave 2 in 12s", st.NextWave)
	}
	if got := st.Waves[1][0].Reason; got != "wave 2 opens in 12s" {
		t.Errorf("waiting node's reason %q", got)
	}
	paused := testApp(func(a *spec.App) { a.Paused = true })
	st = StatusOf(paused, rec, reports, nil, t0.Add(3*time.Second))
	if st.NextWave != nil || st.Waves[1][0].Reason != "rollout paused" {
		t.Errorf("paused: next wave %+v, reason %q", st.NextWave, st.Waves[1][0].Reason)
	}
	// Resuming restarts the delay.
	rec = append(rec, ev(EventPaused), ev(EventResumed, func(e *Event) { e.Time = t0.Add(10 * time.Second) }))
	st = StatusOf(testApp(), rec, reports, nil, t0.Add(12*time.Second))
	if st.NextWave == nil || st.NextWave.OpensIn != 13*time.Second {
		t.Errorf("after resuming: next wave %+v, want in 13s", st.NextWave)
	}
}

// TestStatusJSONDurations: durations are Go duration strings with a number
// of seconds, free lease slots have no zero acquired time, leases a state.
func TestStatusJSONDurations(t *testing.T) {
	rec := append(started([]string{"a"}, []string{"b"}), ev(EventWaveDone, wave(0), func(e *Event) { e.Time = t0 }))
	rec[0].Time = t0
	rec[0].Options.BatchDelay = 20 * time.Second
	st := StatusOf(testApp(), rec, nil, []Lease{lease(0, "b", 0)}, t0.Add(90*time.Second/10))
	b, err := json.Marshal(st)
	must(t, err)
	var got map[string]any
	must(t, json.Unmarshal(b, &got))
	if got["elapsed"] != "9s" || got["elapsedSeconds"] != 9.0 {
		t.Errorf("elapsed %v, %v: %s", got["elapsed"], got["elapsedSeconds"], b)
	}
	nw := got["nextWave"].(map[string]any)
	if nw["wave"] != 2.0 || nw["opensIn"] != "11s" || nw["opensInSeconds"] != 11.0 {
		t.Errorf("nextWave %v", nw)
	}
	l := got["leases"].([]any)[0].(map[string]any)
	if l["ttl"] != "30s" || l["ttlSeconds"] != 30.0 || l["state"] != LeaseHeld {
		t.Errorf("lease %v", l)
	}
	free, err := json.Marshal(LeaseStatusOf(Lease{App: "web", Slot: 1, TTL: 20 * time.Second}, t0))
	must(t, err)
	if strings.Contains(string(free), "acquired") || !strings.Contains(string(free), `"state":"free"`) {
		t.Errorf("free slot: %s", free)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWavesCountFromOne: the engine's reasons, event summaries (record
// commit messages, agent logs) and status agree with the columns: the
// plan's second wave is "wave 2". Before, messages said "wave 1 opens in"
// about the wave the columns called 2.
func TestWavesCountFromOne(t *testing.T) {
	rec := append(started([]string{"a"}, []string{"b"}), ev(EventNodeDone, node("a")), ev(EventWaveDone, wave(0)))
	rec[0].Options.BatchDelay = 15 * time.Second
	in := base("b", rec)
	in.App.Rollout.BatchDelay.Duration = 15 * time.Second
	in.Now = t0.Add(2 * time.Second)
	d := Decide(in)
	if d.Action != Wait || !strings.HasPrefix(d.Reason, "wave 2 opens in ") {
		t.Fatalf("decision for the second wave: %v %q", d.Action, d.Reason)
	}
	if got := rec[2].Summary(); got != "wave_done wave 1" {
		t.Errorf("summary of the first wave's wave_done: %q", got)
	}
	if WaveName(0) != "wave 1" || WaveNumber(2) != 3 {
		t.Errorf("WaveName(0) = %q, WaveNumber(2) = %d", WaveName(0), WaveNumber(2))
	}
}

// TestStatusAtOnceRollback: the status of an at-once rollback says so, and
// a pause (which it ignores) does not show it as paused.
func TestStatusAtOnceRollback(t *testing.T) {
	in := rollbackIn("a", []Event{ev(EventPaused, of("c2"))})
	app := in.App
	app.Paused = true
	st := StatusOf(app, in.Record, nil, nil, t0)
	if !st.Rollback || !st.AtOnce || st.State != StateProgressing || st.NextWave != nil {
		t.Fatalf("status = %+v, want a progressing at-once rollback", st)
	}
}

// TestStatusSkippedNodeThatCaughtUp: a node skipped as unreachable that
// converged after the rollout completed (late, healthy on the target) is
// upgraded now, its reason saying it was skipped; one still behind stays
// skipped. Before, it showed "skipped" beside the target version it runs.
func TestStatusSkippedNodeThatCaughtUp(t *testing.T) {
	rec := append(started([]string{"a", "b"}),
		ev(EventNodeUnreachable, node("a"), func(e *Event) { e.Reason = "took no lease within nodeTimeout 1m0s of wave 1 opening" }),
		ev(EventNodeDone, node("b")), ev(EventWaveDone, wave(0)), ev(EventCompleted))
	reports := map[string]NodeReport{
		"a": {Apps: map[string]AppReport{"web": {Version: "1.1.0", State: AppHealthy}}},
		"b": {Apps: map[string]AppReport{"web": {Version: "1.1.0", State: AppHealthy}}},
	}
	st := StatusOf(testApp(), rec, reports, nil, t0)
	if a := st.Waves[0][0]; a.State != NodeUpgraded || !strings.Contains(a.Reason, "skipped in the rollout (took no lease") {
		t.Errorf("skipped node on the target: %+v, want upgraded, saying it was skipped", a)
	}
	reports["a"] = NodeReport{Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppHealthy}}}
	if a := StatusOf(testApp(), rec, reports, nil, t0).Waves[0][0]; a.State != NodeSkipped {
		t.Errorf("skipped node still behind: %+v, want skipped", a)
	}
}
