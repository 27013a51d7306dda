package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// TestStagesRunInOrder (issue 16 §5): node-1 is stage 1 with a bake of 6 s,
// node-2 and node-3 the rest; no node of the rest switches before stage 1's
// last wave is done plus the bake, status says the wave waits for the bake,
// and the rollout completes.
func TestStagesRunInOrder(t *testing.T) {
	const bake = 6 * time.Second
	f := newFleet(t, 3)
	commit := f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 2, nodeTimeout: "20s",
		stages: [{nodes: ["node-1"], bake: "6s"}]`}, "web 1.1.0 in two stages")
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == commit && hasWaveDone(r, 0), "stage 1 not done"
	}, "stage 1 (node-1) to be done")
	out, err := f.cli("status", "web", "--output", "json")
	var st reconciler.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status web: %v\n%s", err, out)
	}
	r := reconciler.Latest(f.record("web"))
	if !hasWaveDone(r, 1) && (st.NextWave == nil || st.NextWave.Wave != 2 || st.NextWave.Stage != 1) {
		t.Fatalf("status during the bake: next wave %+v, want wave 2 waiting for stage 1's bake", st.NextWave)
	}
	if len(st.Stages) != 2 {
		t.Fatalf("status stages = %+v, want 2", st.Stages)
	}
	f.eventually(time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r.ID == commit && r.Outcome == reconciler.OutcomeCompleted && len(r.Done) == 3, "outcome " + r.Outcome
	}, "the rollout to complete")
	rec := f.record("web")
	r = reconciler.Latest(rec)
	if got := fmt.Sprint(r.Waves); got != "[[node-1] [node-2 node-3]]" {
		t.Fatalf("waves %s, want node-1 then node-2 and node-3", got)
	}
	stage1 := rec[r.WaveDone[0]].Time
	for _, e := range rec[r.Started:] {
		if e.Rollout != commit || (e.Node != "node-2" && e.Node != "node-3") || e.Type != reconciler.EventNodeDone {
			continue
		}
		if gap := e.Time.Sub(stage1); gap < bake {
			t.Errorf("%s done %s after stage 1 was, before its bake of %s ran out", e.Node, gap, bake)
		}
	}
	f.waitAll("1.1.0", 30*time.Second)
}

func hasWaveDone(r *reconciler.Rollout, k int) bool { _, ok := r.WaveDone[k]; return ok }
