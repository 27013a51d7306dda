package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told (Advance, AdvanceTo). Timers
// fire in the order of their deadlines (ties: the order they were set),
// one at a time, with the clock reading each one's deadline as it fires,
// so a run is the same every time. After each firing Fake calls Settle,
// when set, so that a harness can let the goroutine woken by it finish
// before the next one fires (the simulation passes testing/synctest.Wait).
//
// It is safe for concurrent use. The zero value is not usable: NewFake.
type Fake struct {
	// Settle, when set, runs after each timer fires, without the lock.
	Settle func()

	mu      sync.Mutex
	now     time.Time
	seq     uint64
	waiters []*fakeTimer
}

// Epoch is the time a Fake made by NewFake(time.Time{}) starts at.
var Epoch = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// NewFake returns a Fake reading start (Epoch when zero).
func NewFake(start time.Time) *Fake {
	if start.IsZero() {
		start = Epoch
	}
	return &Fake{now: start}
}

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }
func (f *Fake) Until(t time.Time) time.Duration { return t.Sub(f.Now()) }

// Advance moves the clock d forward, firing every timer due on the way.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clock.Fake: Advance by a negative duration (a monotonic clock never goes back)")
	}
	f.AdvanceTo(f.Now().Add(d))
}

// AdvanceTo moves the clock to t (no-op when t is not after now), firing
// every timer due by then, each at its own deadline.
func (f *Fake) AdvanceTo(t time.Time) {
	for {
		f.mu.Lock()
		if len(f.waiters) == 0 || f.waiters[0].when.After(t) {
			if t.After(f.now) {
				f.now = t
			}
			f.mu.Unlock()
			return
		}
		w := f.waiters[0]
		f.waiters = f.waiters[1:]
		if w.when.After(f.now) {
			f.now = w.when
		}
		w.fire(f.now)
		settle := f.Settle
		f.mu.Unlock()
		if settle != nil {
			settle()
		}
	}
}

// Next is the deadline of the earliest pending timer.
func (f *Fake) Next() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waiters) == 0 {
		return time.Time{}, false
	}
	return f.waiters[0].when, true
}

// Pending is how many timers and tickers wait to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

func (f *Fake) After(d time.Duration) <-chan time.Time { return f.NewTimer(d).C() }

func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	f.schedule(t, d)
	f.mu.Unlock()
	return t
}

func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock.Fake: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d}
	f.mu.Lock()
	f.schedule(t, d)
	f.mu.Unlock()
	return fakeTicker{t}
}

func (f *Fake) Sleep(ctx context.Context, d time.Duration) error {
	t := f.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// schedule puts t in the queue d from now. Caller holds mu.
func (f *Fake) schedule(t *fakeTimer, d time.Duration) {
	f.seq++
	t.when, t.seq, t.queued = f.now.Add(max(d, 0)), f.seq, true
	i := sort.Search(len(f.waiters), func(i int) bool {
		w := f.waiters[i]
		return w.when.After(t.when) || (w.when.Equal(t.when) && w.seq > t.seq)
	})
	f.waiters = append(f.waiters, nil)
	copy(f.waiters[i+1:], f.waiters[i:])
	f.waiters[i] = t
}

// unschedule takes t out of the queue. Caller holds mu.
func (f *Fake) unschedule(t *fakeTimer) bool {
	if !t.queued {
		return false
	}
	for i, w := range f.waiters {
		if w == t {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			break
		}
	}
	t.queued = false
	return true
}

type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	when   time.Time
	seq    uint64
	period time.Duration // tickers
	queued bool
}

// fire sends now (dropped when the last value is still unread, like a
// ticker) and re-queues a ticker. Caller holds f.mu.
func (t *fakeTimer) fire(now time.Time) {
	t.queued = false
	select {
	case t.c <- now:
	default:
	}
	if t.period > 0 {
		t.f.schedule(t, t.period)
	}
}

// drain drops a value sent but not received, so no stale tick follows a
// Stop or Reset (Go 1.23 semantics).
func (t *fakeTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.drain()
	return t.f.unschedule(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.drain()
	was := t.f.unschedule(t)
	t.f.schedule(t, d)
	return was
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }
func (k fakeTicker) Stop()               { k.t.Stop() }

func (k fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock.Fake: non-positive interval for Ticker.Reset")
	}
	k.t.f.mu.Lock()
	defer k.t.f.mu.Unlock()
	k.t.drain()
	k.t.f.unschedule(k.t)
	k.t.period = d
	k.t.f.schedule(k.t, d)
}
