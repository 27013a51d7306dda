package reconciler

import (
	"slices"
	"testing"
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
				if n != judged && judgingOf(Input{Node: n}, r).judgesNode(judged) {
					got = append(got, n)
				}
			}
		}
		if !slices.Equal(got, judges) {
			t.Errorf("judges of %s: %v, want %v", judged, got, judges)
		}
		if !judgingOf(Input{Node: judged}, r).judgesNode(judged) {
			t.Errorf("%s does not judge itself", judged)
		}
	}
	if judgingOf(Input{Node: "late"}, r).judgesNode("a") {
		t.Error("a node outside the plan judges first")
	}
	small := &Rollout{Waves: [][]string{{"a"}, {"b"}}}
	if !judgingOf(Input{Node: "b"}, small).judgesNode("a") || !judgingOf(Input{Node: "a"}, small).judgesNode("b") {
		t.Error("in a plan of two, each does not judge the other")
	}
}
