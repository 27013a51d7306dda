package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/regfile"
)

// FileName is the state file in the state directory.
const FileName = "state.json"

// State is everything the agent keeps about its node.
type State struct {
	Apps map[string]*App `json:"apps"`
}

// App is one app's local state.
type App struct {
	Active    string          `json:"active,omitempty"`   // the version that runs, "" when none
	Previous  string          `json:"previous,omitempty"` // the version before it
	Driver    string          `json:"driver,omitempty"`   // the driver that runs Active
	Installed []string        `json:"installed,omitempty"`
	Running   *driver.Running `json:"running,omitempty"`
	LastError string          `json:"lastError,omitempty"`
	ErrorTime time.Time       `json:"errorTime,omitzero"`
	Failed    *Failure        `json:"failed,omitempty"`
	Refused   []Refusal       `json:"refused,omitempty"` // artifacts refused, newest last
	Step      *Step           `json:"step,omitempty"`
	Since     time.Time       `json:"since,omitzero"` // when Active or the state last changed
	// Last is the last step of the app's convergence journaled here, and
	// when: with Step (a switch in progress) it is all a restarted agent
	// needs to know where it stopped.
	Last     JournalStep `json:"last,omitempty"`
	LastTime time.Time   `json:"lastTime,omitzero"`
}

// JournalStep names one step of an app's convergence on this node. The
// agent journals each step with exactly one write of the local state,
// which makes the step's change and sets Last (docs/agent.md, "the step
// machine"):
//
//	target --download--> switch --switched--> runs the target --settled--> (error cleared)
//	  |                     |--switch_failed--> old version runs, target remembered failed
//	  |                     '--switch_interrupted--> old version runs, target retried
//	  '--install (failed: fetch, verify or unpack, once per error) --> old version runs
//
// recover (a step a stopped agent left half done, settled at start),
// prune and stop are the journal's housekeeping.
type JournalStep string

// The steps.
const (
	JournalInstallFailed     JournalStep = "install"            // LastError, and a refusal of the artifact
	JournalInstalled         JournalStep = "download"           // the verified release is unpacked: Installed
	JournalSwitching         JournalStep = "switch"             // Step: the switch is under way
	JournalSwitched          JournalStep = "switched"           // Active, Previous, Running; Step cleared
	JournalSwitchFailed      JournalStep = "switch_failed"      // Failed, Running (what runs now); Step cleared
	JournalSwitchInterrupted JournalStep = "switch_interrupted" // Step cleared, target retried
	JournalSettled           JournalStep = "settled"            // healthy on its version: an earlier error cleared
	JournalRecovered         JournalStep = "recover"            // a half-done step settled at start
	JournalPruned            JournalStep = "prune"              // old releases forgotten, then removed
	JournalStopFailed        JournalStep = "stop"               // an app no longer targeted would not stop
)

// Failure is a version whose switch failed on this node.
type Failure struct {
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
	// Attempts and RetryAt are set for a failed first install (nothing ran
	// before, so nothing serves meanwhile): the version is tried again at
	// RetryAt, with backoff (docs/agent.md, "A failed first install").
	Attempts int       `json:"attempts,omitempty"`
	RetryAt  time.Time `json:"retryAt,omitzero"`
}

// Refusal is an artifact that was fetched and refused (signature, pin,
// content): not fetched and unpacked again while the spec names the same
// artifact (Key), and refused by digest wherever it comes from.
type Refusal struct {
	Key    string    `json:"key"` // version, artifact URL, signature URL, pin
	SHA256 string    `json:"sha256"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// maxRefusals bounds the refusals kept per app (the oldest go first).
const maxRefusals = 8

// AddRefusal records r, replacing one of the same key.
func (a *App) AddRefusal(r Refusal) {
	a.Refused = slices.DeleteFunc(a.Refused, func(o Refusal) bool { return o.Key == r.Key })
	a.Refused = append(a.Refused, r)
	if n := len(a.Refused); n > maxRefusals {
		a.Refused = slices.Delete(a.Refused, 0, n-maxRefusals)
	}
}

// RefusalOf returns the refusal of the artifact key names, or nil.
func (a *App) RefusalOf(key string) *Refusal {
	for i := range a.Refused {
		if a.Refused[i].Key == key {
			return &a.Refused[i]
		}
	}
	return nil
}

// RefusedDigests lists the digests of the refused artifacts.
func (a *App) RefusedDigests() []string {
	var out []string
	for _, r := range a.Refused {
		if r.SHA256 != "" {
			out = append(out, r.SHA256)
		}
	}
	return out
}

// Step is an operation in progress.
type Step struct {
	Op      string    `json:"op"` // StepSwitch or StepStop
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Started time.Time `json:"started"`
}

// Step operations.
const (
	StepSwitch = "switch"
	StepStop   = "stop"
)

// AddInstalled records v as installed (once).
func (a *App) AddInstalled(v string) {
	if !slices.Contains(a.Installed, v) {
		a.Installed = append(a.Installed, v)
		slices.Sort(a.Installed)
	}
}

// Store holds the state in memory and on disk. It is safe for concurrent use.
type Store struct {
	dir    string
	clock  clock.Clock
	mu     sync.Mutex
	st     State
	writes int // state file writes that landed, for the journal's tests
}

// Writes is how many times the state file was written since Open.
func (s *Store) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// Open reads dir/state.json, or starts empty when there is none; times it
// stamps come from the system clock.
func Open(dir string) (*Store, error) { return OpenClock(dir, nil) }

// OpenClock is Open with the clock times are stamped from (nil: the system
// clock).
func OpenClock(dir string, c clock.Clock) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	s := &Store{dir: dir, clock: clock.Or(c), st: State{Apps: map[string]*App{}}}
	b, err := regfile.ReadFile(filepath.Join(dir, FileName), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &s.st); err != nil {
		return nil, fmt.Errorf("read state %s: %w", filepath.Join(dir, FileName), err)
	}
	if s.st.Apps == nil {
		s.st.Apps = map[string]*App{}
	}
	return s, nil
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// Get returns a copy of the state.
func (s *Store) Get() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.st)
}

// App returns a copy of one app's state (zero when unknown).
func (s *Store) App(name string) App {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.st.Apps[name]; ok {
		return clone(*a)
	}
	return App{}
}

// UpdateApp changes one app's state with f and writes the state. When the
// write fails the change is not kept.
func (s *Store) UpdateApp(name string, f func(*App)) error {
	return s.Update(func(st *State) {
		a, ok := st.Apps[name]
		if !ok {
			a = &App{}
			st.Apps[name] = a
		}
		f(a)
	})
}

// DeleteApp forgets an app.
func (s *Store) DeleteApp(name string) error {
	return s.Update(func(st *State) { delete(st.Apps, name) })
}

// Update changes the state with f and writes it atomically.
func (s *Store) Update(f func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := clone(s.st)
	f(&next)
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := WriteFile(filepath.Join(s.dir, FileName), append(b, '\n')); err != nil {
		return err
	}
	s.writes++
	s.st = next
	return nil
}

func clone[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("state: plain data does not marshal: %v", err))
	}
	var c T
	if err := json.Unmarshal(b, &c); err != nil {
		panic(fmt.Sprintf("state: plain data does not unmarshal: %v", err))
	}
	return c
}

// WriteFile replaces path with data atomically: a temporary file in the same
// directory, synced, renamed over path, then the directory synced.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename: no-op
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RecordRunning keeps what a driver reports running for an app (a driver's
// OnChange callback): its pids and data, and, when the driver settled on
// another version (finishing a switch a killed agent left half-done), that
// version as the active one.
func (s *Store) RecordRunning(r driver.Running) error {
	return s.UpdateApp(r.App, func(a *App) {
		if r.Version == "" && len(r.PIDs) == 0 && len(r.Data) == 0 {
			a.Running = nil
			return
		}
		a.Running = &r
		if r.Version != "" && r.Version != a.Active {
			a.Previous, a.Active, a.Since = a.Active, r.Version, s.clock.Now()
		}
	})
}
