// Package clock is the one time source of the agent, the coordinator and the
// Git store: Now, timers and tickers behind an interface, with the system
// clock for production and one Fake that moves only when told, for tests and
// the fleet simulation (internal/fleetsim).
//
// Lease expiry is measured on a Clock, so an implementation must be
// monotonic: time.Now values carry a monotonic reading and Sub uses it; the
// Fake never goes backwards.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	Since(t time.Time) time.Duration
	Until(t time.Time) time.Duration
	// NewTimer fires once after d, NewTicker every d (d > 0).
	NewTimer(d time.Duration) Timer
	NewTicker(d time.Duration) Ticker
	// After is NewTimer(d).C() for a wait that is never stopped early.
	After(d time.Duration) <-chan time.Time
	// Sleep waits d or until ctx ends, returning ctx.Err() then.
	Sleep(ctx context.Context, d time.Duration) error
}

// Timer is a *time.Timer behind an interface. As with Go 1.23's timers, no
// stale value is received after Stop or Reset returns.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Ticker is a *time.Ticker behind an interface.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// System is the machine's clock.
type System struct{}

func (System) Now() time.Time                         { return time.Now() }
func (System) Since(t time.Time) time.Duration        { return time.Since(t) }
func (System) Until(t time.Time) time.Duration        { return time.Until(t) }
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (System) NewTimer(d time.Duration) Timer         { return sysTimer{time.NewTimer(d)} }
func (System) NewTicker(d time.Duration) Ticker       { return sysTicker{time.NewTicker(d)} }

func (System) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type sysTimer struct{ t *time.Timer }

func (s sysTimer) C() <-chan time.Time        { return s.t.C }
func (s sysTimer) Stop() bool                 { return s.t.Stop() }
func (s sysTimer) Reset(d time.Duration) bool { return s.t.Reset(d) }

type sysTicker struct{ t *time.Ticker }

func (s sysTicker) C() <-chan time.Time   { return s.t.C }
func (s sysTicker) Stop()                 { s.t.Stop() }
func (s sysTicker) Reset(d time.Duration) { s.t.Reset(d) }

// Or returns c, or the system clock when c is nil (for options' defaults).
func Or(c Clock) Clock {
	if c == nil {
		return System{}
	}
	return c
}
