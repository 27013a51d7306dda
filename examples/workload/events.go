package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// eventLog appends this process's life to a file as JSON lines; each line
// is one write on an O_APPEND file, so processes sharing the file do not
// interleave. A nil *eventLog writes nothing.
type eventLog struct {
	f *os.File
}

// event is one line; internal/fleetlab.WorkloadEvent reads the same shape.
type event struct {
	Event   string    `json:"event"`
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Mono    int64     `json:"mono"` // CLOCK_MONOTONIC, nanoseconds
	Time    time.Time `json:"time"`
}

func openEvents(path string) (*eventLog, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return &eventLog{f: f}, nil
}

func (l *eventLog) write(name string) {
	if l == nil {
		return
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	b, err := json.Marshal(event{Event: name, PID: os.Getpid(), Version: version, Mono: ts.Nano(), Time: time.Now()})
	if err != nil {
		return
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		// The judge will miss this event; say so where the agent keeps our log.
		log.Printf("workload %s: event log %s: %v", version, l.f.Name(), err)
	}
}

func (l *eventLog) close() {
	if l != nil {
		l.f.Close()
	}
}
