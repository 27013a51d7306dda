package reconciler

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// FuzzDecide: a rollout record and the leases are written by every node of
// the fleet and read back from Git, so Decide meets whatever they decode to.
// For any record and leases (JSON, as fleetrepo stores them), any own state
// and strategy, Decide must not panic, must ask only for a slot below the
// app's slot count, upgrade only under a live lease this node holds for the
// rollout, and append only an event of that rollout (or a new one started
// at the tip).
func FuzzDecide(f *testing.F) {
	rec := func(evs ...Event) []byte { b, _ := json.Marshal(evs); return b }
	w := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}
	startedEv := Event{Type: EventStarted, Rollout: "c1", Target: "1.1.0", From: "1.0.0", Waves: w, Options: &RolloutFlags{BatchSize: 2}}
	held, _ := json.Marshal([]Lease{{App: "web", Slot: 0, Holder: "a", Rollout: "c1", TTL: 30 * time.Second, Token: "ta"},
		{App: "web", Slot: 1, Holder: "b", Rollout: "c1", TTL: 30 * time.Second, Token: "tb", Unchanged: time.Minute}})
	f.Add(rec(startedEv), []byte("[]"), "a", "1.0.0", AppHealthy, uint8(0), int64(0))
	f.Add(rec(startedEv), held, "a", "1.0.0", AppHealthy, uint8(0), int64(0))
	f.Add(rec(startedEv), held, "c", "1.0.0", AppHealthy, uint8(0), int64(0))
	f.Add(rec(startedEv, Event{Type: EventNodeDone, Rollout: "c1", Node: "a"}, Event{Type: EventNodeDone, Rollout: "c1", Node: "b"},
		Event{Type: EventWaveDone, Rollout: "c1"}), held, "c", "1.0.0", AppWaiting, uint8(1), int64(60))
	f.Add(rec(startedEv, Event{Type: EventNodeFailed, Rollout: "c1", Node: "a", Reason: "health"}), held, "b", "1.1.0", AppFailed, uint8(2), int64(3600))
	f.Add(rec(startedEv, Event{Type: EventOptionsChanged, Rollout: "c1", Wave: 3, Waves: [][]string{{"x"}}, Options: &RolloutFlags{BatchSize: -1}}),
		[]byte(`[{"slot":-1,"holder":"a","rollout":"c1","ttl":-5}]`), "a", "1.0.0", AppHealthy, uint8(0), int64(-100))
	f.Add(rec(startedEv, Event{Type: EventPaused, Rollout: "c1"}, Event{Type: EventResumed, Rollout: "c1"}, Event{Type: EventCompleted, Rollout: "c1"}),
		[]byte("null"), "e", "1.0.0", AppUpgrading, uint8(1), int64(0))
	f.Fuzz(func(t *testing.T, record, leases []byte, self, version, state string, strategy uint8, seenAgo int64) {
		var in Input
		if json.Unmarshal(record, &in.Record) != nil || json.Unmarshal(leases, &in.Leases) != nil {
			return
		}
		app := spec.App{Name: "web", Version: "1.1.0", Rollout: spec.Rollout{
			Strategy: []string{spec.StrategyRolling, spec.StrategyCanary, spec.StrategyAllAtOnce}[strategy%3], BatchSize: 2,
			NodeTimeout: spec.Duration{Duration: time.Minute}, RollbackOnFail: strategy&4 == 0, OnUnreachable: spec.OnUnreachableSkip,
			Canary: spec.Canary{Count: 1, Monitor: spec.Duration{Duration: 5 * time.Minute}},
		}, Nodes: spec.Targets{All: true}}
		now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
		in.Node, in.App, in.Tip, in.Targeted, in.Now = self, app, "c1", true, now
		in.Self = AppReport{Version: version, State: state}
		in.Inventory = []NodeInfo{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}}
		in.Seen = SeenAll(len(in.Record), now.Add(-time.Duration(seenAgo)*time.Second))
		d := Decide(in)
		r := Latest(in.Record)
		switch d.Action {
		case Acquire:
			if r == nil || d.Slot < 0 || d.Slot >= slotCount(app, r) {
				t.Fatalf("Decide asks for slot %d of %v (record %s)", d.Slot, r, record)
			}
		case Upgrade:
			if d.Lease.Holder != self || d.Lease.Expired() || r == nil || d.Lease.Rollout != r.ID {
				t.Fatalf("Decide upgrades %s under lease %+v (rollout %v; record %s)", self, d.Lease, r, record)
			}
		case Append:
			if d.Event == nil {
				t.Fatalf("Decide appends no event (record %s)", record)
			}
			if d.Event.Type != EventStarted && (r == nil || d.Event.Rollout != r.ID) && d.Event.Type != EventSuperseded {
				t.Fatalf("Decide appends %+v to rollout %v (record %s)", d.Event, r, record)
			}
		}
	})
}
