package fleetlab

import (
	"os"
	"path/filepath"
	"testing"
)

const s = int64(1e9) // a second of Mono

func ev(name string, pid int, v string, at int64) WorkloadEvent {
	return WorkloadEvent{Event: name, PID: pid, Version: v, Mono: at}
}

// A node's switch lasts from the new version's start to the old one's
// exit; two nodes overlapping count 2; an abandoned candidate counts too.
func TestSwitchesFromEvents(t *testing.T) {
	self := os.Getpid() // alive: a process with no exit event lasts until now
	a := []WorkloadEvent{
		ev(EventStart, 10, "1.0.0", 0*s), ev(EventReady, 10, "1.0.0", 1*s),
		ev(EventStart, self, "1.1.0", 10*s), ev(EventReady, self, "1.1.0", 12*s),
		ev(EventStop, 10, "1.0.0", 13*s), ev(EventExit, 10, "1.0.0", 14*s),
	}
	b := []WorkloadEvent{
		ev(EventStart, self, "1.0.0", 0*s),
		ev(EventStart, 21, "1.1.0", 13*s), ev(EventStop, 21, "1.1.0", 20*s), // abandoned candidate
	}
	c := []WorkloadEvent{
		ev(EventStart, 30, "1.0.0", 0*s), ev(EventExit, 30, "1.0.0", 2*s), // a restart, no overlap
		ev(EventStart, self, "1.0.0", 3*s),
	}
	var all []Switch
	swA := Switches("a", Lives(a, 100*s))
	if len(swA) != 1 || swA[0].From != 10*s || swA[0].To != 14*s {
		t.Fatalf("a: %+v, want one switch 10s..14s", swA)
	}
	if swA[0].Candidate != "1.1.0" {
		t.Fatalf("a: candidate %q, want 1.1.0", swA[0].Candidate)
	}
	swB := Switches("b", Lives(b, 100*s))
	if len(swB) != 1 || swB[0].From != 13*s || swB[0].To != 20*s {
		t.Fatalf("b: %+v, want the candidate's life 13s..20s", swB)
	}
	if swC := Switches("c", Lives(c, 100*s)); len(swC) != 0 {
		t.Fatalf("c: %+v, want none: one process at a time", swC)
	}
	all = append(append(all, swA...), swB...)
	n, at, who := MaxConcurrent(all)
	if n != 2 || at != 13*s || len(who) != 2 {
		t.Fatalf("max = %d at %d (%+v), want 2 at 13s", n, at, who)
	}
	if n, _, _ := MaxConcurrent(swA); n != 1 {
		t.Fatalf("one node alone: %d", n)
	}
}

// A process killed without an exit event ends at its node's next event.
func TestVanishedProcess(t *testing.T) {
	dead := 1 << 30 // no such pid
	l := Lives([]WorkloadEvent{
		ev(EventStart, dead, "1.0.0", 0), ev(EventReady, dead, "1.0.0", 1*s),
		ev(EventStart, dead-1, "1.0.0", 5*s),
	}, 100*s)
	if len(l) != 2 || !l[0].Vanished || l[0].End != 5*s {
		t.Fatalf("lives = %+v, want the first vanished, ended at 5s", l)
	}
}

func TestReadEvents(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e")
	if got, err := ReadEvents(p); err != nil || got != nil {
		t.Fatalf("missing file: %v %v", got, err)
	}
	if err := os.WriteFile(p, []byte(`{"event":"ready","pid":2,"version":"1","mono":5}
{"event":"start","pid":2,"version":"1","mono":3}

`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEvents(p)
	if err != nil || len(got) != 2 || got[0].Event != EventStart {
		t.Fatalf("= %+v, %v; want 2 events sorted by mono", got, err)
	}
	if err := os.WriteFile(p, []byte("{bad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEvents(p); err == nil {
		t.Fatal("a bad line was accepted")
	}
}
