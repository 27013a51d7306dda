package health

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// Retries and delays on the bubble's fake clock: 3 retries 5s apart take
// 15s; answers from another version are asked again every 20ms without
// using up a retry.
func TestRetryTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		c := Check{Retries: 3, RetryDelay: 5 * time.Second, probe: func(context.Context) error {
			attempts++
			return errors.New("down")
		}}
		start := time.Now()
		if err := c.Run(context.Background()); err == nil {
			t.Fatal("a check that never passes passed")
		}
		if took := time.Since(start); attempts != 4 || took != 15*time.Second {
			t.Fatalf("%d attempts in %v, want 4 in 15s", attempts, took)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		c := Check{Retries: 0, probe: func(context.Context) error {
			if attempts++; attempts <= 50 {
				return fmt.Errorf("health: %w 1, want 2", ErrOtherVersion)
			}
			return nil
		}}
		start := time.Now()
		if err := c.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 50*20*time.Millisecond {
			t.Fatalf("took %v, want 1s (50 × 20ms)", took)
		}
	})
}

// A deadline ends the wait and names both the last answer and the deadline.
func TestRunDeadlineOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
		defer cancel()
		c := Check{Retries: 100, RetryDelay: 2 * time.Second, probe: func(context.Context) error { return errors.New("down") }}
		err := c.Run(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || err.Error()[:4] != "down" {
			t.Fatalf("Run: %v, want the last answer and the deadline", err)
		}
	})
}
