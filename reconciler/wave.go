package reconciler

import "fmt"

// Waves are counted from 1 for people: the plan's wave at index k is
// "wave k+1" in every text, log line and message (status, --wait, diff,
// plan, the engine's reasons, record commit messages). Only the stored
// record (event.json's "wave") keeps the 0-based index into the plan.

// WaveNumber is the number people see for the plan's wave index k.
func WaveNumber(k int) int { return k + 1 }

// WaveName is "wave N" for the plan's wave index k.
func WaveName(k int) string { return fmt.Sprintf("wave %d", WaveNumber(k)) }

// Summary describes an event for people, waves counted from 1:
// "started 1.1.0", "wave_done wave 2", "node_failed node n3: health check
// failed". Record commit messages and agent logs use it.
func (e Event) Summary() string {
	s := e.Type
	switch {
	case e.Target != "":
		s += " " + e.Target
	case e.Type == EventWaveDone, e.Type == EventApproved:
		s += " " + WaveName(e.Wave)
	}
	if e.Node != "" {
		s += " node " + e.Node
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}
