package process

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
)

// BenchmarkHotSwap drives requests at the example workload over loopback
// (a new connection per request, open loop at swapRate) during swapCount
// consecutive upgrades, and reports failed requests. "hot" is this driver's
// swap; "stop-then-start" is the naive baseline. Run it with
//
//	go test -run '^$' -bench BenchmarkHotSwap -benchtime 1x ./agent/driver/process/
func BenchmarkHotSwap(b *testing.B) {
	b.Run("hot", func(b *testing.B) { benchSwaps(b, hotSwap) })
	b.Run("stop-then-start", func(b *testing.B) { benchSwaps(b, naiveSwap) })
}

const (
	swapCount = 20
	swapRate  = 1000 // requests per second
)

type swapFunc func(ctx context.Context, d *Driver, cur driver.Running, next driver.Release, addr string) (driver.Running, error)

func hotSwap(ctx context.Context, d *Driver, cur driver.Running, next driver.Release, addr string) (driver.Running, error) {
	return d.Switch(ctx, &cur, next, healthy(addr, next.Version))
}

func naiveSwap(ctx context.Context, d *Driver, cur driver.Running, next driver.Release, addr string) (driver.Running, error) {
	if err := d.Stop(ctx, cur); err != nil {
		return cur, err
	}
	return d.Switch(ctx, nil, next, healthy(addr, next.Version))
}

func benchSwaps(b *testing.B, swap swapFunc) {
	for b.Loop() {
		total, failed, elapsed := swapUnderLoad(b, swap)
		b.ReportMetric(float64(total), "requests")
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric(float64(total)/elapsed.Seconds(), "req/s")
	}
}

func swapUnderLoad(b *testing.B, swap swapFunc) (total, failed int64, elapsed time.Duration) {
	ctx := context.Background()
	d := newDriver(b, nil)
	addr := freeAddr(b)
	cur, err := d.Switch(ctx, nil, rel("1", addr), healthy(addr, "1"))
	if err != nil {
		b.Fatal(err)
	}
	var tot, bad atomic.Int64
	stop := openLoad(addr, swapRate, &tot, &bad)
	start := time.Now()
	for i := range swapCount {
		v := []string{"2", "3"}[i%2]
		if cur, err = swap(ctx, d, cur, rel(v, addr), addr); err != nil {
			stop()
			b.Fatalf("swap %d to %s: %v", i, v, err)
		}
		time.Sleep(50 * time.Millisecond) // serve a while on each version: part of the load profile
	}
	stop()
	return tot.Load(), bad.Load(), time.Since(start)
}

// openLoad starts one request every 1/rate seconds, each on a new
// connection, whatever the previous ones are doing, until stopped.
func openLoad(addr string, rate int, total, failed *atomic.Int64) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				total.Add(1)
				if _, err := get(addr); err != nil {
					failed.Add(1)
				}
			}()
		}
	}()
	return func() { close(quit); wg.Wait() }
}

func freeAddr(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
