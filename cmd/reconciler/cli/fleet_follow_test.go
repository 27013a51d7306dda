package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// TestPipedProgressPrintsChanges: piped, --wait prints a line only when the
// rollout changed, not every second as the elapsed time or the countdown to
// the next wave moves; the line that starts a wait names the wave and its
// countdown. Before, a line was printed every second.
func TestPipedProgressPrintsChanges(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, start: time.Now().Add(-3 * time.Second)}
	st := reconciler.Status{App: "web", Target: "1.1.0", State: reconciler.StateProgressing,
		Waves:    [][]reconciler.NodeStatus{{{Node: "n1", State: reconciler.NodeUpgraded}}, {{Node: "n2", State: reconciler.AppWaiting}}},
		NextWave: &reconciler.WaveOpening{Wave: 2, OpensIn: 15 * time.Second}}
	for i := range 10 {
		st.NextWave.OpensIn = time.Duration(15-i) * time.Second
		p.show(st)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "wave 1 [n1 upgraded]  wave 2 [n2 waiting]  (wave 2 opens in 15s)") {
		t.Fatalf("ten identical states printed:\n%s", out.String())
	}
	st.Waves[1][0].State, st.NextWave = reconciler.AppSwitching, nil
	p.show(st)
	p.show(st)
	st.Waves[1][0].State, st.State = reconciler.NodeNotStarted, reconciler.StateRolledBack
	p.show(st)
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "n2 switching") || !strings.Contains(lines[2], "n2 not started") {
		t.Fatalf("progress:\n%s", out.String())
	}
}

// TestLiveProgressRedraws: on a terminal the line is redrawn in place every
// time, with the countdown moving.
func TestLiveProgressRedraws(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, live: true, start: time.Now()}
	st := reconciler.Status{App: "web", Target: "1.1.0", State: reconciler.StateProgressing,
		NextWave: &reconciler.WaveOpening{Wave: 2, OpensIn: 3 * time.Second}}
	p.show(st)
	st.NextWave.OpensIn = 2 * time.Second
	p.show(st)
	p.end()
	if got := out.String(); strings.Count(got, "\r\033[K") != 2 || !strings.Contains(got, "opens in 2s") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("live progress: %q", got)
	}
}

// TestProgressNamesTheApproval: --wait at an approval gate says which wave
// waits and the command that approves it.
func TestProgressNamesTheApproval(t *testing.T) {
	st := reconciler.Status{App: "web", Target: "1.1.0", State: reconciler.StateProgressing,
		Waves:    [][]reconciler.NodeStatus{{{Node: "n1", State: reconciler.NodeUpgraded}}, {{Node: "n2", State: reconciler.AppWaiting}}},
		Approval: &reconciler.ApprovalGate{Wave: 2, Command: "reconciler promote web --wave 2"}}
	what, _ := progressLine(st)
	if !strings.HasSuffix(what, "(wave 2 waits for approval: reconciler promote web --wave 2)") {
		t.Fatalf("progress = %q", what)
	}
}
