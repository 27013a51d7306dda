package reconciler

import (
	"testing"
	"time"
)

// TestOverfull: a lease just taken is one too many when reads made after
// the compare-and-swap show its slot at or above the batch size recorded
// since, or the other live holders filling it; expired holders that can be
// taken over, and holders' leases of other rollouts that expired, do not
// count.
func TestOverfull(t *testing.T) {
	app := testApp()
	app.Rollout.BatchSize = 2
	r := &Rollout{ID: "c1", Waves: [][]string{{"a", "b", "c"}}, Options: RolloutFlags{BatchSize: 2}, Done: map[string]string{"z": "tz"}}
	mine := lease(0, "a", 0)
	lowered := *r
	lowered.Options.BatchSize = 1
	for _, c := range []struct {
		name   string
		r      *Rollout
		held   Lease
		leases []Lease
		want   bool
	}{
		{"alone under the batch size", r, mine, []Lease{mine}, false},
		{"one other holder, batch size 2", r, mine, []Lease{mine, lease(1, "b", time.Second)}, false},
		{"two other holders fill it", r, mine, []Lease{mine, lease(1, "b", time.Second), lease(2, "c", time.Second)}, true},
		{"an expired holder with a verdict does not count", r, mine, []Lease{mine, lease(1, "b", time.Second), lease(2, "z", time.Minute)}, false},
		{"slot 1 after the batch size was lowered to 1", &lowered, lease(1, "a", 0), []Lease{lease(1, "a", 0)}, true},
		{"slot 0 beside a holder of slot 1, batch size lowered to 1", &lowered, mine, []Lease{mine, lease(1, "b", time.Second)}, true},
	} {
		if got := Overfull(app, c.r, c.leases, c.held); got != c.want {
			t.Errorf("%s: Overfull = %v, want %v", c.name, got, c.want)
		}
	}
}
