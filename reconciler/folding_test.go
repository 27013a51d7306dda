package reconciler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// randomRecord is a record of up to three rollouts over six nodes, with
// every kind of event a fold treats differently, in a random order.
func randomRecord(rng *rand.Rand, n int) []Event {
	nodes := []string{"a", "b", "c", "d", "e", "f"}
	rollout := "c0"
	start := func(k int) Event {
		rollout = fmt.Sprintf("c%d", k)
		return Event{Type: EventStarted, Rollout: rollout, Target: fmt.Sprintf("1.%d.0", k),
			Waves: [][]string{{"a", "b"}, {"c", "d"}, {"e", "f"}}, Options: &RolloutFlags{BatchSize: 2}}
	}
	rec := []Event{start(1)}
	types := []string{EventNodeDone, EventNodeFailed, EventNodeLost, EventNodeUnreachable, EventNodeHeld,
		EventWaveDone, EventPaused, EventResumed, EventOptionsChanged, EventApproved, EventCompleted,
		EventFailed, EventRolledBack, EventSuperseded, EventStarted}
	for i := range n {
		t := types[rng.IntN(len(types))]
		if t == EventStarted {
			if rng.IntN(4) != 0 {
				t = EventNodeDone
			} else {
				rec = append(rec, start(len(rec)))
				continue
			}
		}
		e := Event{Type: t, Rollout: rollout, Node: nodes[rng.IntN(len(nodes))], Wave: rng.IntN(3),
			Lease: fmt.Sprintf("t%d", rng.IntN(3)), Time: t0.Add(time.Duration(i) * time.Second), Spec: fmt.Sprintf("s%d", i)}
		if rng.IntN(8) == 0 {
			e.Rollout = "elsewhere" // another rollout's event, ignored by the fold
		}
		if t == EventOptionsChanged {
			e.Options = &RolloutFlags{BatchSize: 1 + rng.IntN(3)}
			e.Wave, e.Waves = 1, [][]string{{"d", "c"}, {"f"}, {"e"}}
		}
		rec = append(rec, e)
	}
	return rec
}

// TestFoldingMatchesLatest: a Folding fed every prefix of a record, in
// steps of random length, returns what folding the prefix afresh does, and
// so does one fed a record replaced by another.
func TestFoldingMatchesLatest(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		rec := randomRecord(rng, 40)
		var f Folding
		for n := 0; n <= len(rec); n += rng.IntN(4) {
			if got, want := f.Latest(rec[:n]), Latest(rec[:n]); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, %d events: folded\n%+v\nwant\n%+v", seed, n, got, want)
			}
		}
		other := randomRecord(rand.New(rand.NewPCG(seed+1000, 2)), 30)
		if got, want := f.Latest(other), Latest(other); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d, record replaced: folded\n%+v\nwant\n%+v", seed, got, want)
		}
	}
}
