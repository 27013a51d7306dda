package reconciler

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// midRollout is the input of a node of the last wave in a rollout of n
// nodes in waves of n/10, half way: five waves done (each node's lease
// taken and its node_done recorded, each wave's wave_done), the sixth
// wave's nodes holding every slot. That is what each waiting node decides
// on at every pass of a large rollout (docs/scale.md).
func midRollout(n int) Input {
	size := n / 10
	waves := make([][]string, 10)
	var inv []NodeInfo
	for i := range n {
		name := fmt.Sprintf("n%05d", i)
		waves[i/size] = append(waves[i/size], name)
		inv = append(inv, NodeInfo{Name: name})
	}
	rec := []Event{{Type: EventStarted, Rollout: "c1", Target: "1.1.0", From: "1.0.0", Waves: waves,
		Options: &RolloutFlags{BatchSize: size}}}
	for k := range 5 {
		for _, name := range waves[k] {
			rec = append(rec, Event{Type: EventNodeDone, Rollout: "c1", Node: name, Lease: "t" + name})
		}
		rec = append(rec, Event{Type: EventWaveDone, Rollout: "c1", Wave: k})
	}
	var leases []Lease
	for s, name := range waves[5] {
		leases = append(leases, Lease{App: "web", Slot: s, Holder: name, Rollout: "c1", TTL: 20 * time.Second, Token: "t" + name})
	}
	app := testApp()
	app.Rollout.BatchSize = size
	return Input{
		Node: waves[9][size-1], App: app, Tip: "c1", Targeted: true,
		Self: AppReport{Version: "1.0.0", State: AppHealthy}, Inventory: inv,
		Record: rec, Seen: seenAt(len(rec), t0), Leases: leases, Now: t0.Add(time.Minute),
	}
}

// r0 is the rollout in's record starts.
func r0(in Input) *Rollout { return Latest(in.Record) }

// BenchmarkDecideWaiting is one pass of the engine for a node waiting for
// its wave, at 1,000 and 10,000 nodes, folding the record afresh and (folded)
// with the record folded already, as the coordinator's Folding hands it
// over: go test -run '^$' -bench DecideWaiting ./reconciler
func BenchmarkDecideWaiting(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		in := midRollout(n)
		if d := Decide(in); d.Action != Wait {
			b.Fatalf("%d nodes: %s (%s), want a wait", n, d.Action, d.Reason)
		}
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(in)
			}
		})
		folded := in
		folded.Folded = Latest(in.Record) // as the coordinator's Folding hands it over
		b.Run(fmt.Sprintf("nodes=%d/folded", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(folded)
			}
		})
		// Once a lease was lost (a holder of an earlier wave went silent
		// and came back), every pass checks the lost nodes too.
		lost := in
		lost.Record = append(slices.Clip(in.Record), Event{Type: EventNodeLost, Rollout: "c1", Node: r0(in).Waves[5][0], Lease: "t-old"})
		lost.Seen = seenAt(len(lost.Record), t0)
		lost.Folded = Latest(lost.Record)
		b.Run(fmt.Sprintf("nodes=%d/folded/lost", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(lost)
			}
		})
		// The open wave's holders all went silent and were recorded lost:
		// every pass looks at every expired slot (the end of a 10,000-node
		// run, docs/scale.md).
		silent := in
		silent.Record = slices.Clip(in.Record)
		silent.Leases = slices.Clone(in.Leases)
		for i := range silent.Leases {
			l := &silent.Leases[i]
			l.Unchanged = 2 * l.TTL
			silent.Record = append(silent.Record, Event{Type: EventNodeLost, Rollout: "c1", Node: l.Holder, Lease: l.Token})
		}
		silent.Seen = seenAt(len(silent.Record), t0)
		silent.Folded = Latest(silent.Record)
		b.Run(fmt.Sprintf("nodes=%d/folded/silent", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(silent)
			}
		})
	}
}

// TestBehindCountsTheWavesToOpen: a node waiting for its wave says how
// many waves open before it does; other decisions say 0.
func TestBehindCountsTheWavesToOpen(t *testing.T) {
	in := midRollout(100) // waves of 10, five done, the sixth (index 5) holding every slot
	r := Latest(in.Record)
	for _, c := range []struct {
		wave   int
		action Action
		behind int
	}{{9, Wait, 4}, {7, Wait, 2}, {6, Wait, 1}, {5, Upgrade, 0}, {2, Wait, 0}} {
		in.Node = r.Waves[c.wave][3]
		if c.wave < 5 {
			in.Self = AppReport{Version: "1.1.0", State: AppHealthy}
		}
		if d := Decide(in); d.Action != c.action || d.Behind != c.behind {
			t.Errorf("node of wave %d: %s (%s), behind %d; want %s, behind %d", c.wave, d.Action, d.Reason, d.Behind, c.action, c.behind)
		}
	}
}

// TestSlotWaitMarksOnlyTheWaitForASlot: a node of the open wave finding
// every slot held waits for a slot (a lease change can end that); a node
// waiting for its wave does not.
func TestSlotWaitMarksOnlyTheWaitForASlot(t *testing.T) {
	in := midRollout(100)
	in.Now = t0.Add(10 * time.Second) // within nodeTimeout of the wave opening
	r := Latest(in.Record)
	for i := range in.Leases {
		in.Leases[i].Holder = r.Waves[5][i/2] // half the wave holds every slot (two each)
	}
	in.Node = r.Waves[5][9]
	if d := Decide(in); d.Action != Wait || !d.SlotWait || d.Behind != 0 {
		t.Errorf("open wave, slots held: %s (%s), slot wait %v, behind %d", d.Action, d.Reason, d.SlotWait, d.Behind)
	}
	in.Node = r.Waves[8][0]
	if d := Decide(in); d.Action != Wait || d.SlotWait {
		t.Errorf("waiting for its wave: %s (%s), slot wait %v", d.Action, d.Reason, d.SlotWait)
	}
}
