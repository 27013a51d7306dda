package reconciler

import (
	"sort"
	"time"
)

// SeenTimes is when this node first saw each event of a record, on its own
// clock (Input.Seen). It is kept as runs, one per read that found new
// events: a record of 10,000 events read in a few hundred passes is a few
// hundred times, not 10,000. (A time per event, kept by each node of a
// 10,000-node fleet for a record of 20,000 events, was 5 GB in the scale
// harness, docs/scale.md.) The zero value has seen nothing. A SeenTimes is
// a value: Extend returns a new one and never changes what an older one
// says.
type SeenTimes struct {
	runs []seenRun
}

// seenRun: the events from the previous run's end up to end (exclusive)
// were first seen at at.
type seenRun struct {
	end int
	at  time.Time
}

// SeenAll says that the first n events were all first seen at at.
func SeenAll(n int, at time.Time) SeenTimes { return SeenTimes{}.Extend(n, at) }

// Len is how many events were seen.
func (s SeenTimes) Len() int {
	if len(s.runs) == 0 {
		return 0
	}
	return s.runs[len(s.runs)-1].end
}

// At is when event i was first seen; ok is false for an event not seen.
func (s SeenTimes) At(i int) (at time.Time, ok bool) {
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].end > i })
	if i < 0 || k == len(s.runs) {
		return time.Time{}, false
	}
	return s.runs[k].at, true
}

// Extend says that the events up to n (exclusive) not seen before were
// first seen at at. The runs are shared with s and capped, so s still says
// what it said.
func (s SeenTimes) Extend(n int, at time.Time) SeenTimes {
	if n <= s.Len() {
		return s
	}
	runs := append(s.runs[:len(s.runs):len(s.runs)], seenRun{end: n, at: at})
	return SeenTimes{runs: runs[:len(runs):len(runs)]}
}

// Prefix is what s says of the first n events.
func (s SeenTimes) Prefix(n int) SeenTimes {
	if n >= s.Len() {
		return s
	}
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].end >= n })
	runs := append(s.runs[:k:k], seenRun{end: n, at: s.runs[k].at})
	if n <= 0 {
		runs = nil
	}
	return SeenTimes{runs: runs}
}
