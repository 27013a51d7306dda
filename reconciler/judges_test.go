package reconciler

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// TestJudges: each node of a plan has Judges judges besides itself, the
// nodes right after it, or at the end of the plan the ones right before
// it; never a node at the far end (it keeps its last read of the leases).
func TestJudges(t *testing.T) {
	r := &Rollout{Waves: [][]string{{"a", "b"}, {"c", "d"}, {"e"}}}
	want := map[string][]string{
		"a": {"b", "c", "d"},
		"b": {"c", "d", "e"},
		"c": {"b", "d", "e"},
		"d": {"b", "c", "e"},
		"e": {"b", "c", "d"},
	}
	for judged, judges := range want {
		var got []string
		for _, w := range r.Waves {
			for _, n := range w {
				if n != judged && judgingOf(Input{Node: n}, r).judgesNode(judged, Judges) {
					got = append(got, n)
				}
			}
		}
		if !slices.Equal(got, judges) {
			t.Errorf("judges of %s: %v, want %v", judged, got, judges)
		}
		if !judgingOf(Input{Node: judged}, r).judgesNode(judged, Judges) {
			t.Errorf("%s does not judge itself", judged)
		}
	}
	if judgingOf(Input{Node: "late"}, r).judgesNode("a", Judges) {
		t.Error("a node outside the plan judges first")
	}
	if !judgingOf(Input{Node: "late"}, r).judgesNode("a", 4*Judges) {
		t.Error("a node outside the plan does not judge once the judges cover the plan")
	}
	small := &Rollout{Waves: [][]string{{"a"}, {"b"}}}
	if !judgingOf(Input{Node: "b"}, small).judgesNode("a", Judges) || !judgingOf(Input{Node: "late"}, small).judgesNode("b", Judges) {
		t.Error("in a plan smaller than Judges, not every node judges")
	}
}

// TestJudgesWiden: a verdict due for longer has four times as many judges
// each further period, and the window of a node in a large plan widens
// from the nodes right after it.
func TestJudgesWiden(t *testing.T) {
	p := time.Minute
	for _, c := range []struct {
		late time.Duration
		want int
	}{{0, 3}, {59 * time.Second, 3}, {time.Minute, 12}, {3 * time.Minute, 192}, {1000 * time.Hour, math.MaxInt}} {
		if got := judgesFor(c.late, p); got != c.want {
			t.Errorf("judgesFor(%s, %s) = %d, want %d", c.late, p, got, c.want)
		}
	}
	var waves [][]string
	for w := range 10 {
		var wave []string
		for i := range 100 {
			wave = append(wave, fmt.Sprintf("n%04d", w*100+i))
		}
		waves = append(waves, wave)
	}
	r := &Rollout{Waves: waves}
	j := judgingOf(Input{Node: "n0112"}, r) // 12 after n0100
	if j.judgesNode("n0100", Judges) || !j.judgesNode("n0100", 4*Judges) || j.judgesNode("n0113", 4*Judges) {
		t.Error("n0112 judges n0100 with 3 judges, or not with 12, or judges the node after it")
	}
}
