package reconciler

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// ringInventory: a is ring 0 (and in eu: the first stage that matches
// wins), b and c are in eu, d and e are the rest.
func ringInventory() []NodeInfo {
	return []NodeInfo{
		{Name: "a", Labels: map[string]string{"ring": "0", "region": "eu"}},
		{Name: "b", Labels: map[string]string{"region": "eu"}},
		{Name: "c", Labels: map[string]string{"region": "eu"}},
		{Name: "d", Labels: map[string]string{"region": "us"}},
		{Name: "e", Labels: map[string]string{"region": "us"}},
	}
}

// ringStages: ring 0 then a bake of 1h; eu in waves of 1, no bake; a
// stage that matches no node; the rest in the rollout's waves of 2.
func ringStages(a *spec.App) {
	a.Rollout.BatchDelay.Duration = 30 * time.Second
	a.Rollout.Stages = []spec.Stage{
		{Nodes: spec.Targets{Selector: map[string]string{"ring": "0"}}, Bake: spec.Duration{Duration: time.Hour}},
		{Nodes: spec.Targets{Selector: map[string]string{"region": "eu"}}, BatchSize: 1},
		{Nodes: spec.Targets{Selector: map[string]string{"region": "mars"}}, Bake: spec.Duration{Duration: time.Minute}},
	}
}

func sel(k, v string) *spec.Targets { return &spec.Targets{Selector: map[string]string{k: v}} }

// ringSpans are the spans PlanWaves gives ringStages over ringInventory.
func ringSpans() []StageSpan {
	return []StageSpan{
		{Index: 0, Nodes: sel("ring", "0"), BatchSize: 2, Bake: spec.Duration{Duration: time.Hour}, FirstWave: 0, Waves: 1},
		{Index: 1, Nodes: sel("region", "eu"), BatchSize: 1, OwnBatchSize: true, FirstWave: 1, Waves: 2},
		{Index: 3, BatchSize: 2, FirstWave: 3, Waves: 1},
	}
}

func ringWaves() [][]string { return [][]string{{"a"}, {"b"}, {"c"}, {"d", "e"}} }

func TestStagesPlan(t *testing.T) {
	canary := func(a *spec.App) { a.Rollout.Strategy = spec.StrategyCanary }
	atOnce := func(a *spec.App) { a.Rollout.Strategy = spec.StrategyAllAtOnce }
	twoInRing := func(a *spec.App) { a.Rollout.Stages[0].Nodes = spec.Targets{Names: []string{"a", "d"}} }
	tests := []struct {
		name  string
		app   spec.App
		inv   []NodeInfo
		waves [][]string
		first []int // each span's FirstWave
		empty []int
	}{
		{"first matching stage wins, the rest last, an empty stage dropped", testApp(ringStages), ringInventory(),
			ringWaves(), []int{0, 1, 3}, []int{2}},
		{"canary: the first stage's first node alone, later stages as planned", testApp(ringStages, twoInRing, canary), ringInventory(),
			[][]string{{"a"}, {"d"}, {"b"}, {"c"}, {"e"}}, []int{0, 2, 4}, []int{2}},
		{"canary in the first non-empty stage", testApp(ringStages, canary, func(a *spec.App) {
			a.Rollout.Stages[0].Nodes = spec.Targets{Names: []string{"zz"}}
		}), ringInventory(), [][]string{{"a"}, {"b"}, {"c"}, {"d", "e"}}, []int{0, 3}, []int{0, 2}},
		{"all_at_once: one wave per stage", testApp(ringStages, atOnce), ringInventory(),
			[][]string{{"a"}, {"b", "c"}, {"d", "e"}}, []int{0, 1, 2}, []int{2}},
		{"held nodes stay out of every stage", testApp(ringStages), func() []NodeInfo {
			inv := ringInventory()
			inv[1].Hold = true
			return inv
		}(), [][]string{{"a"}, {"c"}, {"d", "e"}}, []int{0, 1, 2}, []int{2}},
		{"every node matched: no rest stage", testApp(ringStages, func(a *spec.App) {
			a.Rollout.Stages[2].Nodes = spec.Targets{All: true}
		}), ringInventory(), ringWaves(), []int{0, 1, 3}, nil},
		{"no node at all: no waves, no stages", testApp(ringStages), nil, [][]string{}, nil, []int{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanWaves(tt.app, tt.inv)
			if !slices.EqualFunc(p.Waves, tt.waves, slices.Equal) {
				t.Fatalf("waves = %v, want %v", p.Waves, tt.waves)
			}
			var first []int
			total := 0
			for _, s := range p.Stages {
				first = append(first, s.FirstWave)
				total += s.Waves
			}
			if !slices.Equal(first, tt.first) || total != len(p.Waves) {
				t.Fatalf("stages = %+v, want first waves %v covering %d waves", p.Stages, tt.first, len(p.Waves))
			}
			if !slices.Equal(p.EmptyStages, tt.empty) {
				t.Fatalf("empty stages = %v, want %v", p.EmptyStages, tt.empty)
			}
		})
	}
}

func TestStagesPlanJSONAndText(t *testing.T) {
	p := PlanWaves(testApp(ringStages), ringInventory())
	b, err := json.Marshal(p.Stages)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"index":0,"nodes":{"ring":"0"},"batchSize":2,"bake":"1h0m0s","firstWave":0,"waves":1},` +
		`{"index":1,"nodes":{"region":"eu"},"batchSize":1,"ownBatchSize":true,"bake":"0s","firstWave":1,"waves":2},` +
		`{"index":3,"batchSize":2,"bake":"0s","firstWave":3,"waves":1}]`
	if string(b) != want {
		t.Errorf("json:\n%s\nwant:\n%s", b, want)
	}
	var lines []string
	for _, s := range p.Stages {
		lines = append(lines, StageText(s))
	}
	wantText := `stage 1 ({ring: "0"}): wave 1 of up to 2, bake 1h0m0s
stage 2 ({region: "eu"}): waves 2-3 of up to 1
stage 4 (the rest): wave 4 of up to 2`
	if got := strings.Join(lines, "\n"); got != wantText {
		t.Errorf("text:\n%s\nwant:\n%s", got, wantText)
	}
}

// staged is node's input in the rollout c1 of ringWaves, the events more
// after started, each seen at t0 unless seen says otherwise.
func staged(nodeName string, now time.Time, more ...Event) Input {
	rec := started(ringWaves()...)
	rec[0].Stages = ringSpans()
	rec[0].Options.BatchDelay = 30 * time.Second
	rec = append(rec, more...)
	in := base(nodeName, rec)
	in.App = testApp(ringStages)
	in.Inventory = ringInventory()
	in.Now = now
	return in
}

func doneUpTo(k int) []Event {
	var out []Event
	for i, w := range ringWaves()[:k+1] {
		for _, n := range w {
			out = append(out, ev(EventNodeDone, node(n)))
		}
		out = append(out, ev(EventWaveDone, wave(i)))
	}
	return out
}

// TestStagesGates: every gate a stage adds to the engine: the bake at a
// stage boundary, batchDelay inside a stage and after a stage without
// bake, a pause and a resume during a bake, nodeTimeout counted from the
// bake's end, the canary monitor on top of a bake.
func TestStagesGates(t *testing.T) {
	tests := []decideCase{
		{
			name:   "ring 0's wave opens at once",
			in:     staged("a", t0),
			action: Acquire,
		},
		{
			name:   "the next stage waits for ring 0's bake, not batchDelay",
			in:     staged("b", t0.Add(30*time.Second), doneUpTo(0)...),
			action: Wait,
			check: func(t *testing.T, d Decision) {
				wantReason(`wave 2 waits for stage 1 ({ring: "0"})'s bake: opens in 59m30s`)(t, d)
				if !d.Until.Equal(t0.Add(time.Hour)) {
					t.Fatalf("until = %s, want %s", d.Until, t0.Add(time.Hour))
				}
			},
		},
		{
			name:   "once baked, the next stage's first wave opens",
			in:     staged("b", t0.Add(time.Hour), doneUpTo(0)...),
			action: Acquire,
		},
		{
			name: "the bake counts from when this node saw the wave done",
			in: func() Input {
				in := staged("b", t0.Add(time.Hour), doneUpTo(0)...)
				in.Seen = seenSet(in.Seen, map[int]time.Time{2: t0.Add(time.Minute)})
				return in
			}(),
			action: Wait,
			check:  wantReason("opens in 1m0s"),
		},
		{
			name:   "inside a stage, batchDelay",
			in:     staged("c", t0.Add(30*time.Second), doneUpTo(1)...),
			action: Acquire,
		},
		{
			name:   "inside a stage, batchDelay not passed",
			in:     staged("c", t0.Add(10*time.Second), doneUpTo(1)...),
			action: Wait,
			check:  wantReason("wave 3 opens in 20s"),
		},
		{
			name:   "after a stage without bake, batchDelay",
			in:     staged("d", t0.Add(10*time.Second), doneUpTo(2)...),
			action: Wait,
			check:  wantReason("wave 4 opens in 20s"),
		},
		{
			name:   "a later stage waits for earlier waves",
			in:     staged("d", t0.Add(time.Hour), doneUpTo(0)...),
			action: Wait,
			check:  wantReason("wave 4 waits for earlier waves"),
		},
		{
			name: "paused during the bake",
			in: func() Input {
				in := staged("b", t0.Add(time.Hour), append(doneUpTo(0), ev(EventPaused))...)
				in.App.Paused = true
				return in
			}(),
			action: Wait,
			check:  wantReason("rollout paused"),
		},
		{
			name: "resuming restarts the bake",
			in: func() Input {
				in := staged("b", t0.Add(time.Hour), append(doneUpTo(0), ev(EventPaused), ev(EventResumed))...)
				in.Seen = seenSet(in.Seen, map[int]time.Time{in.Seen.Len() - 1: t0.Add(30 * time.Minute)})
				return in
			}(),
			action: Wait,
			check:  wantReason("bake: opens in 30m0s"),
		},
		{
			name:   "no node of the next stage is unreachable during the bake",
			in:     staged("a", t0.Add(59*time.Minute), doneUpTo(0)...),
			action: Wait,
		},
		{
			name:   "nodeTimeout counts from the bake's end",
			in:     staged("c", t0.Add(time.Hour+time.Minute), doneUpTo(0)...), // b's judge
			action: Append,
			check: func(t *testing.T, d Decision) {
				wantEvent(EventNodeUnreachable)(t, d)
				if d.Event.Node != "b" || !strings.Contains(d.Event.Reason, "wave 2 opening") {
					t.Fatalf("event = %+v", d.Event)
				}
			},
		},
		{
			name: "a canary alone in ring 0: monitor on top of the bake",
			in: func() Input {
				in := staged("b", t0.Add(time.Hour+time.Minute), doneUpTo(0)...)
				in.App.Rollout.Strategy = spec.StrategyCanary
				return in
			}(),
			action: Wait,
			check:  wantReason("bake: opens in 4m0s"),
		},
		{
			name: "the canary monitors until the bake and monitor end",
			in: func() Input {
				in := staged("a", t0.Add(time.Hour), doneUpTo(0)...)
				in.App.Rollout.Strategy = spec.StrategyCanary
				in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
				return in
			}(),
			action: Monitor,
			check: func(t *testing.T, d Decision) {
				if !d.Until.Equal(t0.Add(time.Hour + 5*time.Minute)) {
					t.Fatalf("until = %s", d.Until)
				}
			},
		},
		{
			name:   "every stage done: completed",
			in:     staged("a", t0.Add(3*time.Hour), doneUpTo(3)...),
			action: Append,
			check:  wantEvent(EventCompleted),
		},
	}
	runDecideCases(t, tests)
}

// TestStagesStarted: the started event records the stage spans; an
// at-once rollback has none, a rollback in waves keeps them.
func TestStagesStarted(t *testing.T) {
	in := base("a", nil)
	in.App = testApp(ringStages)
	in.Inventory = ringInventory()
	d := Decide(in)
	if d.Event == nil || d.Event.Type != EventStarted || !slices.EqualFunc(d.Event.Waves, ringWaves(), slices.Equal) {
		t.Fatalf("decision = %+v", d)
	}
	if got, _ := json.Marshal(d.Event.Stages); !jsonEqual(t, got, ringSpans()) {
		t.Fatalf("stages = %s", got)
	}
	if r := Latest([]Event{*d.Event}); len(r.Stages) != 3 || r.Stages[2].FirstWave != 3 {
		t.Fatalf("folded stages = %+v", r.Stages)
	}
	for _, waves := range []bool{false, true} {
		in := rollbackIn("a", nil)
		in.Tip = "c3"
		in.Record = in.Record[:len(in.Record)-1] // no rollback started yet
		in.Seen = in.Seen.Prefix(len(in.Record))
		in.App = testApp(ringStages)
		in.App.Version = "1.0.0"
		in.Inventory = ringInventory()
		in.Rollback = &RollbackMark{Of: "c1", Waves: waves}
		d := Decide(in)
		if d.Event == nil || d.Event.Type != EventStarted {
			t.Fatalf("waves %v: decision = %+v", waves, d)
		}
		if (len(d.Event.Stages) > 0) != waves || d.Event.AtOnce == waves {
			t.Errorf("waves %v: started = %+v, want stages only in waves", waves, d.Event)
		}
	}
}

func jsonEqual(t *testing.T, got []byte, want any) bool {
	t.Helper()
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	return string(got) == string(w)
}

// TestStagesReplan: a change of rollout.batchSize re-chunks the waves not
// yet started stage by stage: a stage with its own batchSize keeps it,
// and no wave mixes two stages.
func TestStagesReplan(t *testing.T) {
	inv := append(ringInventory(), NodeInfo{Name: "f"}, NodeInfo{Name: "g"})
	plan := PlanWaves(testApp(ringStages), inv) // a | b | c | d e | f g
	tests := []struct {
		name   string
		done   int // waves done
		size   int
		waves  [][]string
		stages [][2]int // FirstWave, Waves of each span
	}{
		{"from wave 2: ring 0 kept, eu keeps its own size, the rest by 1", 0, 1,
			[][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"f"}, {"g"}}, [][2]int{{0, 1}, {1, 2}, {3, 4}}},
		{"by 3: the rest in waves of 3", 0, 3,
			[][]string{{"a"}, {"b"}, {"c"}, {"d", "e", "f"}, {"g"}}, [][2]int{{0, 1}, {1, 2}, {3, 2}}},
		{"inside the rest: its wave in progress kept", 3, 1,
			[][]string{{"a"}, {"b"}, {"c"}, {"d", "e"}, {"f"}, {"g"}}, [][2]int{{0, 1}, {1, 2}, {3, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := started(plan.Waves...)
			rec[0].Stages = plan.Stages
			rec[0].Options.BatchDelay = 30 * time.Second
			for k := range tt.done {
				rec = append(rec, ev(EventWaveDone, wave(k)))
			}
			in := base("a", rec)
			in.App = testApp(ringStages)
			in.App.Rollout.BatchSize = tt.size
			in.Inventory = inv
			d := Decide(in)
			if d.Event == nil || d.Event.Type != EventOptionsChanged {
				t.Fatalf("decision = %+v", d)
			}
			r := Latest(append(rec, *d.Event))
			if !slices.EqualFunc(r.Waves, tt.waves, slices.Equal) {
				t.Fatalf("waves = %v, want %v", r.Waves, tt.waves)
			}
			var got [][2]int
			for _, s := range r.Stages {
				got = append(got, [2]int{s.FirstWave, s.Waves})
			}
			if !slices.Equal(got, tt.stages) {
				t.Fatalf("stages = %v, want %v", got, tt.stages)
			}
		})
	}
}

// TestStagesStatus: status shows the stages and which bake a wave waits for.
func TestStagesStatus(t *testing.T) {
	app := testApp(ringStages)
	rec := started(ringWaves()...)
	rec[0].Stages, rec[0].Time = ringSpans(), t0
	for _, e := range doneUpTo(0) {
		e.Time = t0
		rec = append(rec, e)
	}
	reports := map[string]NodeReport{"b": {Apps: map[string]AppReport{"web": {Version: "1.0.0", State: AppWaiting}}}}
	st := StatusOf(app, rec, reports, nil, t0.Add(10*time.Minute))
	if len(st.Stages) != 3 {
		t.Fatalf("stages = %+v", st.Stages)
	}
	nw := st.NextWave
	if nw == nil || nw.Wave != 2 || nw.Stage != 1 || nw.OpensIn != 50*time.Minute {
		t.Fatalf("next wave = %+v", nw)
	}
	want := `wave 2 waits for stage 1 ({ring: "0"})'s bake: opens in 50m0s`
	if got := st.Waves[1][0].Reason; got != want {
		t.Errorf("b's reason = %q, want %q", got, want)
	}
	if got := nw.Text(); got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	b, _ := json.Marshal(nw)
	var back WaveOpening
	if err := json.Unmarshal(b, &back); err != nil || back.Stage != 1 || !strings.HasPrefix(back.text(), "wave 2 waits for stage 1's bake") {
		t.Errorf("read back from JSON: %+v %v (%s)", back, err, b)
	}
}

// TestStagesEstimate: a bake counts instead of batchDelay at a stage
// boundary.
func TestStagesEstimate(t *testing.T) {
	app := testApp(ringStages)
	p := PlanWaves(app, ringInventory())
	// 4 waves of 10s; boundaries: 1h (ring 0's bake), 30s inside eu, 30s
	// after eu (no bake).
	want := 4*10*time.Second + time.Hour + 2*30*time.Second
	if got := Estimate(app, p, 10*time.Second); got != want {
		t.Errorf("Estimate = %s, want %s", got, want)
	}
}
