package reconciler

import (
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// TestSimulationRollbackAtOnce drives 5 nodes with the engine alone through
// a completed rolling rollout of 1.1.0 (batchSize 1, batchDelay 15s), then
// a rollback commit back to 1.0.0: within one pass of every node (one second
// of the fake clock) each runs 1.0.0, no lease was taken for it, and the
// rollback's rollout completes with every node done. A failure of one node
// does not hold the others back, and nothing asks to roll the rollback back.
func TestSimulationRollbackAtOnce(t *testing.T) {
	for _, failing := range []string{"", "n2"} {
		t.Run("failing="+failing, func(t *testing.T) {
			s := newSim(t, spec.StrategyRolling, []string{"n1", "n2", "n3", "n4", "n5"}, 1)
			s.app.Rollout.BatchDelay.Duration = 15 * time.Second
			s.run(200)
			if r := Latest(s.record); r == nil || r.Outcome != OutcomeCompleted {
				t.Fatalf("the rollout of 1.1.0 did not complete: %+v", r)
			}
			s.app.Version = "1.0.0"
			tokens := s.tokens
			failed := map[string]bool{}
			pass := func() {
				for _, n := range s.nodes {
					for range 10 {
						in := s.input(n)
						in.Tip, in.Rollback = "c2", &RollbackMark{Of: "c1"}
						in.Self.State = AppHealthy
						if failed[n] {
							in.Self.State = AppFailed
						}
						d := Decide(in)
						switch d.Action {
						case Append:
							s.record = append(s.record, *d.Event)
							continue
						case Converge:
							if n == failing {
								failed[n] = true // its switch failed: it keeps 1.1.0
							} else {
								s.version[n] = d.Version
							}
							continue
						case Acquire, Upgrade, Rollback:
							t.Fatalf("%s: %v during an at-once rollback (%s)", n, d.Action, d.Reason)
						}
						break
					}
				}
				s.now = s.now.Add(time.Second)
			}
			pass()
			for _, n := range s.nodes {
				if want := "1.0.0"; n != failing && s.version[n] != want {
					t.Fatalf("after one pass %s runs %s, want %s", n, s.version[n], want)
				}
			}
			for range 3 {
				pass()
			}
			if s.tokens != tokens {
				t.Fatalf("%d leases taken during the rollback", s.tokens-tokens)
			}
			r := Latest(s.record)
			if r.ID != "c2" || !r.IsRollback || !r.AtOnce || r.Outcome != OutcomeCompleted {
				t.Fatalf("rollback rollout = %+v", r)
			}
			if want := 5 - len(failed); len(r.Done) != want || len(r.Failed) != len(failed) {
				t.Fatalf("done %v failed %v", r.Done, r.Failed)
			}
		})
	}
}
