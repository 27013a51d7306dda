package clock

import (
	"context"
	"testing"
	"time"
)

// Timers fire in deadline order, each with the clock reading its deadline;
// a stopped timer never fires; a ticker fires once per period passed.
func TestFakeOrder(t *testing.T) {
	f := NewFake(time.Time{})
	start := f.Now()
	var fired []string
	f.Settle = func() {}
	a, b, c := f.NewTimer(3*time.Second), f.NewTimer(time.Second), f.NewTimer(2*time.Second)
	tick := f.NewTicker(time.Second)
	if !c.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	f.Advance(2500 * time.Millisecond)
	select {
	case at := <-b.C():
		fired = append(fired, "b")
		if at != start.Add(time.Second) {
			t.Fatalf("b fired at %v, want start+1s", at.Sub(start))
		}
	default:
	}
	select {
	case <-a.C():
		t.Fatal("a fired before its deadline")
	case <-c.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	// The ticker fired at 1s and 2s; the second value was dropped unread.
	if at := <-tick.C(); at != start.Add(time.Second) {
		t.Fatalf("tick at %v, want 1s", at.Sub(start))
	}
	f.Advance(time.Second)
	if at := <-a.C(); at != start.Add(3*time.Second) {
		t.Fatalf("a fired at %v", at.Sub(start))
	}
	if len(fired) != 1 || f.Since(start) != 3500*time.Millisecond {
		t.Fatalf("fired %v, clock at %v", fired, f.Since(start))
	}
	tick.Stop()
	if f.Pending() != 0 {
		t.Fatalf("%d timers pending after all fired or stopped", f.Pending())
	}
}

// Reset drops a value not yet received, and Sleep returns when the clock
// has moved or ctx ended.
func TestFakeResetAndSleep(t *testing.T) {
	f := NewFake(time.Time{})
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fired, unread
	tm.Reset(time.Minute)
	select {
	case <-tm.C():
		t.Fatal("a stale value was received after Reset")
	default:
	}
	if next, ok := f.Next(); !ok || next != f.Now().Add(time.Minute) {
		t.Fatalf("next deadline %v %v", next, ok)
	}
	done := make(chan error)
	go func() { done <- f.Sleep(context.Background(), 10*time.Second) }()
	for f.Pending() < 2 {
		time.Sleep(time.Millisecond)
	}
	f.Advance(10 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Sleep(ctx, time.Hour); err == nil {
		t.Fatal("Sleep with an ended context returned nil")
	}
}
