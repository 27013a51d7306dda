package notify

import (
	"slices"
	"testing"

	"github.com/fleetops/reconciler/reconciler"
)

// TestFromRecord: which CloudEvents each record event stands for.
func TestFromRecord(t *testing.T) {
	started := reconciler.Event{Type: reconciler.EventStarted, Rollout: "c1", By: "n1", Target: "1.1.0", From: "1.0.0",
		Waves: [][]string{{"n1"}, {"n2"}}}
	rollback := reconciler.Event{Type: reconciler.EventStarted, Rollout: "c2", By: "n2", Target: "1.0.0", From: "1.1.0",
		Rollback: true, AtOnce: true, Waves: [][]string{{"n1", "n2"}}}
	for _, tc := range []struct {
		name   string
		record []reconciler.Event
		want   []string
	}{
		{"started", []reconciler.Event{started}, []string{Started, WaveStarted}},
		{"last wave done", []reconciler.Event{started, {Type: reconciler.EventWaveDone, Rollout: "c1", Wave: 1}}, []string{WaveDone}},
		{"install failure", []reconciler.Event{started, {Type: reconciler.EventNodeFailed, Rollout: "c1", Node: "n1", Reason: "verify release web 1.1.0: signature does not match"}}, []string{NodeFailed}},
		{"canary monitor", []reconciler.Event{started, {Type: reconciler.EventNodeFailed, Rollout: "c1", Node: "n1", Reason: "canary health check failed during monitor: status 500"}}, []string{NodeFailed, HealthFailed}},
		{"unreachable", []reconciler.Event{started, {Type: reconciler.EventNodeUnreachable, Rollout: "c1", Node: "n2"}}, nil},
		{"approved", []reconciler.Event{started, {Type: reconciler.EventApproved, Rollout: "c1", Wave: 1, Commit: "p1", Reason: "approved by Ada"}}, []string{WaveApproved}},
		{"paused", []reconciler.Event{started, {Type: reconciler.EventPaused, Rollout: "c1"}}, nil},
		{"person's rollback at once", []reconciler.Event{rollback}, []string{RollbackStarted}},
		{"agent's rollback commit", []reconciler.Event{started, {Type: reconciler.EventFailed, Rollout: "c1"}, {Type: reconciler.EventRolledBack, Rollout: "c1", RollbackCommit: "c2", Target: "1.0.0"}}, []string{RollbackStarted, RollbackCommitted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			ces := FromRecord("file:///fleet", "web", tc.record, len(tc.record)-1)
			for _, c := range ces {
				got = append(got, c.Short())
				if c.Data.Target == "" || c.Subject != "web" {
					t.Errorf("%s: target %q subject %q", c.Type, c.Data.Target, c.Subject)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if len(ces) == 2 && ces[0].ID == ces[1].ID {
				t.Fatal("two events of one record event share an id")
			}
		})
	}
	// The approval names the wave (from 1) and the approval commit.
	appr := []reconciler.Event{started, {Type: reconciler.EventApproved, Rollout: "c1", Wave: 1, Commit: "p1", Reason: "approved by Ada", By: "n2"}}
	if ce := FromRecord("f", "web", appr, 1)[0]; ce.Data.Wave != 2 || ce.Data.Commit != "p1" ||
		Text(ce) != "web wave.approved: up to wave 2 of 2 (1.1.0) by commit p1: approved by Ada [by n2]" {
		t.Fatalf("wave.approved = %+v: %s", ce.Data, Text(ce))
	}
	// The rolled-back event names the version restored and the one that failed.
	rec := []reconciler.Event{started, {Type: reconciler.EventRolledBack, Rollout: "c1", RollbackCommit: "c2", Target: "1.0.0"}}
	if d := FromRecord("f", "web", rec, 1)[1].Data; d.Target != "1.0.0" || d.From != "1.1.0" || d.RollbackCommit != "c2" {
		t.Fatalf("rollback.committed data = %+v", d)
	}
}
