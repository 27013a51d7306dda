package fleetlab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WorkloadEvent is one line of a workload's event log (examples/workload
// -events): what a workload process did and when, by the machine's
// monotonic clock.
type WorkloadEvent struct {
	Event   string    `json:"event"` // start, ready, stop or exit
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Mono    int64     `json:"mono"` // CLOCK_MONOTONIC in nanoseconds
	Time    time.Time `json:"time"`
}

// Workload event names.
const (
	EventStart = "start" // the process began
	EventReady = "ready" // it serves
	EventStop  = "stop"  // SIGTERM arrived: it drains
	EventExit  = "exit"  // it is about to exit
)

// Mono is CLOCK_MONOTONIC in nanoseconds, the clock of WorkloadEvent.Mono.
func Mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// ReadEvents reads a workload event log; a missing file is no events.
func ReadEvents(path string) ([]WorkloadEvent, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("workload events: %w", err)
	}
	var out []WorkloadEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e WorkloadEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("workload events %s:%d: %w", path, n, err)
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Mono < out[j].Mono })
	return out, nil
}

// Life is one workload process as its events tell it.
type Life struct {
	PID        int
	Version    string
	Start, End int64 // Mono; End is the exit (or stop) event, or the judging time
	Ended      bool  // an exit or stop event was written
	Vanished   bool  // no such event, and the process is gone (killed)
}

// Lives groups a node's events by process. A process with no stop or exit
// event that is still alive lasts until now; one that is gone without
// saying so (SIGKILL) is marked Vanished and lasts until the node's next
// event after its last one, or until now.
func Lives(events []WorkloadEvent, now int64) []Life {
	byPID := map[int]*Life{}
	var order []int
	last := map[int]int64{}
	for _, e := range events {
		l := byPID[e.PID]
		if l == nil {
			l = &Life{PID: e.PID, Version: e.Version, Start: e.Mono, End: now}
			byPID[e.PID] = l
			order = append(order, e.PID)
		}
		last[e.PID] = e.Mono
		switch e.Event {
		case EventExit:
			l.End, l.Ended = e.Mono, true
		case EventStop:
			if !l.Ended {
				l.End, l.Ended = e.Mono, true
			}
		}
	}
	var out []Life
	for _, pid := range order {
		l := byPID[pid]
		if !l.Ended && !alive(pid) {
			l.Vanished = true
			for _, e := range events {
				if e.Mono > last[pid] && e.PID != pid {
					l.End = e.Mono
					break
				}
			}
		}
		out = append(out, *l)
	}
	return out
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Switch is a span of time during which a node ran more than one version of
// an app at once: from a new version's start to the old one's exit (or an
// abandoned candidate's).
type Switch struct {
	Node      string
	From, To  int64 // Mono
	Versions  []string
	Candidate string // the version whose start began the switch
}

// Switches are the spans during which the node ran two or more workload
// processes, from its event log.
func Switches(node string, lives []Life) []Switch {
	type edge struct {
		at    int64
		delta int
		v     string
	}
	var edges []edge
	for _, l := range lives {
		edges = append(edges, edge{l.Start, 1, l.Version}, edge{l.End, -1, l.Version})
	}
	sort.SliceStable(edges, func(i, j int) bool { // ends before starts at the same moment
		if edges[i].at == edges[j].at {
			return edges[i].delta < edges[j].delta
		}
		return edges[i].at < edges[j].at
	})
	var out []Switch
	var open *Switch
	n := 0
	for _, e := range edges {
		n += e.delta
		switch {
		case n >= 2 && open == nil:
			open = &Switch{Node: node, From: e.at, Candidate: e.v}
			for _, l := range lives {
				if l.Start <= e.at && l.End > e.at {
					open.Versions = append(open.Versions, l.Version)
				}
			}
		case n < 2 && open != nil:
			open.To = e.at
			out = append(out, *open)
			open = nil
		}
	}
	return out
}

// MaxConcurrent is the largest number of nodes switching at the same
// moment, the moment (Mono) and those nodes' switches.
func MaxConcurrent(sw []Switch) (int, int64, []Switch) {
	best, at := 0, int64(0)
	var who []Switch
	for _, s := range sw {
		// The maximum of overlapping intervals is reached at some start.
		var now []Switch
		for _, o := range sw {
			if o.From <= s.From && o.To > s.From {
				now = append(now, o)
			}
		}
		if len(now) > best {
			best, at, who = len(now), s.From, now
		}
	}
	return best, at, who
}

// Describe is a one-line account of switches, relative to base (Mono).
func Describe(sw []Switch, base int64) string {
	var parts []string
	for _, s := range sw {
		parts = append(parts, fmt.Sprintf("%s %v %.2fs..%.2fs", s.Node, s.Versions,
			float64(s.From-base)/1e9, float64(s.To-base)/1e9))
	}
	return strings.Join(parts, "; ")
}
