package fleetsim

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// sched runs the simulation's goroutines one at a time. Every interaction
// with the shared world (a store call, reading the tip, a switch starting
// or ending, a fault, an operator's act) first waits at the gate; the
// scheduler, once every goroutine of the synctest bubble is blocked, picks
// one waiting goroutine with the seeded generator and lets it through.
// Goroutines woken by the same instant of the bubble's clock thus take
// their turns in an order chosen by the seed, and a seed replays exactly.
type sched struct {
	wait func() // testing/synctest.Wait
	rng  *rand.Rand

	mu      sync.Mutex
	queue   []*ticket
	seq     uint64
	stopped bool
	notify  chan struct{} // cap 1: someone queued
	done    chan struct{} // the granted goroutine left the gate
	// blocked, when set, reports whether a waiting goroutine may not go
	// yet (its node is stopped).
	blocked func(key string) bool
	grants  int
}

type ticket struct {
	key string // who waits: "node/incarnation/what"
	seq uint64
	ch  chan bool // true: go; false: the simulation is over
}

// errStopped is what gate returns once the simulation ended.
var errStopped = errors.New("simulation over")

func newSched(wait func(), rng *rand.Rand) *sched {
	return &sched{wait: wait, rng: rng, notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// enter waits for this goroutine's turn; leave must follow (defer it).
func (s *sched) enter(key string) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errStopped
	}
	s.seq++
	t := &ticket{key: key, seq: s.seq, ch: make(chan bool, 1)}
	s.queue = append(s.queue, t)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if !<-t.ch {
		return errStopped
	}
	return nil
}

func (s *sched) leave() { s.done <- struct{}{} }

// run grants turns until the bubble's clock reaches end.
func (s *sched) run(end time.Time, quantum time.Duration, over func() bool) {
	for !over() {
		s.wait()
		s.mu.Lock()
		var ready []*ticket
		for _, t := range s.queue {
			if s.blocked == nil || !s.blocked(t.key) {
				ready = append(ready, t)
			}
		}
		s.mu.Unlock()
		if len(ready) == 0 {
			if !time.Now().Before(end) {
				return
			}
			t := time.NewTimer(min(quantum, time.Until(end)))
			select {
			case <-s.notify:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		// The order goroutines queued in is the Go scheduler's: sort by
		// who they are before the seed picks.
		slices.SortFunc(ready, func(a, b *ticket) int { return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.seq, b.seq)) })
		pick := ready[s.rng.IntN(len(ready))]
		s.mu.Lock()
		s.queue = slices.DeleteFunc(s.queue, func(t *ticket) bool { return t == pick })
		s.grants++
		s.mu.Unlock()
		pick.ch <- true
		<-s.done
	}
}

// stop ends the simulation: every waiting and later enter returns errStopped.
func (s *sched) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, t := range s.queue {
		t.ch <- false
	}
	s.queue = nil
}
