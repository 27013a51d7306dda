package reconciler

import (
	"fmt"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// Stages (rings, issue 16 §5): with rollout.stages, a plan's targeted
// nodes go stage by stage. A node belongs to the first stage whose
// selector matches it; the targeted nodes no stage matches form an implicit
// last stage ("the rest"). Each stage is chunked into waves of its own
// batchSize (else the rollout's); the canary wave is the first stage's
// first wave. The waves stay one flat list (wave numbers, leases and
// wave_done work as without stages), and the started event records each
// stage's span of it. The first wave of a stage opens the previous stage's
// bake after that stage's last wave was seen done, instead of batchDelay
// (a bake of 0 leaves batchDelay). Stages with no node are left out.

// StageSpan is one stage of a plan: which waves it holds and how long the
// next stage waits after it. Waves are 0-based indexes into the plan, as
// in the record; people see numbers from 1 (StageName, WaveName).
type StageSpan struct {
	// Index is the stage's place in rollout.stages; the rest (no
	// selector) has Index len(rollout.stages).
	Index int `json:"index"`
	// Nodes is the stage's selector; nil for the rest.
	Nodes *spec.Targets `json:"nodes,omitempty"`
	// BatchSize is the size its waves were chunked by; OwnBatchSize: the
	// stage set it (a change of rollout.batchSize does not re-chunk it).
	BatchSize    int           `json:"batchSize"`
	OwnBatchSize bool          `json:"ownBatchSize,omitempty"`
	Bake         spec.Duration `json:"bake"`
	FirstWave    int           `json:"firstWave"`
	Waves        int           `json:"waves"`
}

// Rest reports whether the span is the implicit last stage.
func (s StageSpan) Rest() bool { return s.Nodes == nil }

// last is the index of the span's last wave.
func (s StageSpan) last() int { return s.FirstWave + s.Waves - 1 }

// StageName is "stage N ({ring: "0"})" for people, N counted from 1 over
// rollout.stages, or "stage N (the rest)".
func StageName(s StageSpan) string {
	if s.Rest() {
		return fmt.Sprintf("stage %d (the rest)", s.Index+1)
	}
	return fmt.Sprintf("stage %d (%s)", s.Index+1, s.Nodes.Text())
}

// StageText is one line of a plan or status: "stage 1 ({ring: "0"}):
// waves 1-2, bake 1h0m0s".
func StageText(s StageSpan) string {
	waves := fmt.Sprintf("wave %d", WaveNumber(s.FirstWave))
	if s.Waves > 1 {
		waves = fmt.Sprintf("waves %d-%d", WaveNumber(s.FirstWave), WaveNumber(s.last()))
	}
	out := fmt.Sprintf("%s: %s of up to %d", StageName(s), waves, s.BatchSize)
	if s.Bake.Duration > 0 {
		out += ", bake " + s.Bake.String()
	}
	return out
}

// stagedWaves chunks the targeted nodes (sorted) stage by stage. empty
// lists the indexes of the stages that matched no node.
func stagedWaves(app spec.App, nodes []string, inventory []NodeInfo) (waves [][]string, spans []StageSpan, empty []int) {
	labels := make(map[string]map[string]string, len(inventory))
	for _, n := range inventory {
		labels[n.Name] = n.Labels
	}
	stages := app.Rollout.Stages
	members := make([][]string, len(stages)+1) // the last: the rest
	matchers := make([]func(string, map[string]string) bool, len(stages))
	for i, s := range stages {
		matchers[i] = s.Nodes.Matcher()
	}
	for _, n := range nodes {
		i := 0
		for i < len(stages) && !matchers[i](n, labels[n]) {
			i++
		}
		members[i] = append(members[i], n)
	}
	waves = [][]string{}
	for i, m := range members {
		span := StageSpan{Index: i, BatchSize: app.Rollout.BatchSize, FirstWave: len(waves)}
		if i < len(stages) {
			nodes := stages[i].Nodes
			span.Nodes, span.Bake = &nodes, stages[i].Bake
			if stages[i].BatchSize > 0 {
				span.BatchSize, span.OwnBatchSize = stages[i].BatchSize, true
			}
		}
		if len(m) == 0 {
			if i < len(stages) {
				empty = append(empty, i)
			}
			continue
		}
		ws := stageChunks(app, m, span.BatchSize, len(waves) == 0)
		span.Waves = len(ws)
		waves = append(waves, ws...)
		spans = append(spans, span)
	}
	return waves, spans, empty
}

// stageChunks is one stage's waves: the canary alone first in the first
// stage of a canary rollout, the whole stage in one wave for all_at_once.
func stageChunks(app spec.App, nodes []string, size int, first bool) [][]string {
	switch app.Rollout.Strategy {
	case spec.StrategyAllAtOnce:
		return chunks(nodes, len(nodes))
	case spec.StrategyCanary:
		if first {
			n := min(max(app.Rollout.Canary.Count, 1), len(nodes))
			return append(chunks(nodes[:n], n), chunks(nodes[n:], size)...)
		}
	}
	return chunks(nodes, size)
}

// bakeBefore is the bake wave k waits for: the previous stage's, when k
// is a stage's first wave (after the first stage) and that stage bakes.
func (r *Rollout) bakeBefore(k int) (StageSpan, bool) {
	for i, s := range r.Stages {
		if i > 0 && s.FirstWave == k && r.Stages[i-1].Bake.Duration > 0 {
			return r.Stages[i-1], true
		}
	}
	return StageSpan{}, false
}

// delayBefore is how long wave k (k > 0) waits after wave k-1 was seen
// done: the previous stage's bake at a stage boundary, else batchDelay.
func (r *Rollout) delayBefore(k int, batchDelay time.Duration) time.Duration {
	if s, ok := r.bakeBefore(k); ok {
		return s.Bake.Duration
	}
	return batchDelay
}

// opensText says when wave k opens, and why it waits: "wave 3 waits for
// stage 1 ({ring: "0"})'s bake: opens in 59m0s", or "wave 2 opens in 5s".
func (r *Rollout) opensText(k int, in time.Duration) string {
	if s, ok := r.bakeBefore(k); ok {
		return fmt.Sprintf("%s waits for %s's bake: opens in %s", WaveName(k), StageName(s), in)
	}
	return fmt.Sprintf("%s opens in %s", WaveName(k), in)
}

// replanStages re-chunks the waves from first on, stage by stage: a stage
// that set its own batchSize keeps it, the others take size. The spans are
// recomputed; waves before first and their stages stay as they are.
func replanStages(r *Rollout, first, size int) ([][]string, []StageSpan) {
	var waves [][]string
	spans := make([]StageSpan, 0, len(r.Stages))
	for _, s := range r.Stages {
		if s.last() < first {
			spans = append(spans, s)
			continue
		}
		if !s.OwnBatchSize {
			s.BatchSize = size
		}
		from := max(s.FirstWave, first)
		var rest []string
		for _, w := range r.Waves[from : s.last()+1] {
			rest = append(rest, w...)
		}
		kept := from - s.FirstWave
		s.FirstWave = first + len(waves) - kept
		ws := chunks(rest, s.BatchSize)
		s.Waves = kept + len(ws)
		waves = append(waves, ws...)
		spans = append(spans, s)
	}
	return waves, spans
}

func cloneStages(s []StageSpan) []StageSpan {
	if s == nil {
		return nil
	}
	return append([]StageSpan(nil), s...)
}

// text says when the wave opens: "wave 3 waits for stage 1 ({ring:
// "0"})'s bake: opens in 59m0s", or "wave 2 opens in 5s".
func (w WaveOpening) text() string {
	if w.Stage > 0 {
		name := w.stage
		if name == "" { // read back from JSON
			name = fmt.Sprintf("stage %d", w.Stage)
		}
		return fmt.Sprintf("wave %d waits for %s's bake: opens in %s", w.Wave, name, w.OpensIn)
	}
	return fmt.Sprintf("wave %d opens in %s", w.Wave, w.OpensIn)
}

// Text is the status line of a wave opening: "wave 2 opens in 5s
// (batchDelay)", "wave 3 waits for stage 1 ({ring: "0"})'s bake: opens in
// 59m0s".
func (w WaveOpening) Text() string {
	if w.Stage > 0 {
		return w.text()
	}
	return w.text() + " (batchDelay)"
}

// betweenWaves is the sum of the waits between a plan's waves: batchDelay,
// or the previous stage's bake at a stage boundary.
func betweenWaves(p Plan, batchDelay time.Duration) time.Duration {
	r := &Rollout{Waves: p.Waves, Stages: p.Stages}
	var d time.Duration
	for k := 1; k < len(p.Waves); k++ {
		d += r.delayBefore(k, batchDelay)
	}
	return d
}
