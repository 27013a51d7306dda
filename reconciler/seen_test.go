package reconciler

import (
	"testing"
	"time"
)

// TestSeenTimes: runs say when each event was first seen; an extension
// never changes what an older value says, nor does a prefix.
func TestSeenTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	a := SeenAll(3, t0)
	b := a.Extend(5, t0.Add(time.Second))
	c := a.Extend(4, t0.Add(time.Minute)) // from the same older value
	for _, tc := range []struct {
		s    SeenTimes
		i    int
		want time.Time
		ok   bool
	}{
		{a, 0, t0, true}, {a, 2, t0, true}, {a, 3, time.Time{}, false}, {a, -1, time.Time{}, false},
		{b, 2, t0, true}, {b, 3, t0.Add(time.Second), true}, {b, 4, t0.Add(time.Second), true}, {b, 5, time.Time{}, false},
		{c, 3, t0.Add(time.Minute), true}, {c, 4, time.Time{}, false},
		{b.Prefix(4), 3, t0.Add(time.Second), true}, {b.Prefix(4), 4, time.Time{}, false},
		{b.Prefix(2), 1, t0, true}, {b.Prefix(2), 2, time.Time{}, false}, {b.Prefix(0), 0, time.Time{}, false},
		{SeenTimes{}, 0, time.Time{}, false},
	} {
		if got, ok := tc.s.At(tc.i); ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("At(%d) of %d seen = %v, %v; want %v, %v", tc.i, tc.s.Len(), got, ok, tc.want, tc.ok)
		}
	}
	if a.Len() != 3 || b.Len() != 5 || c.Len() != 4 || b.Extend(5, t0).Len() != 5 {
		t.Errorf("lengths %d %d %d", a.Len(), b.Len(), c.Len())
	}
}
