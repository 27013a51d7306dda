package fleetrepo

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
)

// TestFigureWatchLatency measures, 50 times, the time from starting a
// `git push` into a local bare repository to the watcher waking (fsnotify,
// then 150ms of debounce, then a ref listing). A figure, not an assertion:
// set FLEETREPO_FIGURES=1 to run it.
func TestFigureWatchLatency(t *testing.T) {
	if os.Getenv("FLEETREPO_FIGURES") == "" {
		t.Skip("set FLEETREPO_FIGURES=1 to measure")
	}
	bare := gittest.NewBare(t, nil)
	d, err := OpenDesired(testContext(t), DesiredOptions{URL: bare, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	woke := startWatch(t, d.Watch)
	work := gittest.Clone(t, bare, "main")
	var wake, push []time.Duration
	for i := range 50 {
		gittest.Commit(t, work, map[string]string{"n": fmt.Sprint(i)}, fmt.Sprint(i))
		start := time.Now()
		gittest.Git(t, work, "push", "--quiet", "origin", "HEAD:refs/heads/main")
		push = append(push, time.Since(start))
		waitWake(t, woke, fmt.Sprintf("push %d", i))
		wake = append(wake, time.Since(start))
	}
	t.Logf("git push → watcher wakes: median %s, p99 %s (git push itself: median %s); debounce is %s",
		pct(wake, 50), pct(wake, 99), pct(push, 50), debounce)
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Round(100 * time.Microsecond)
}
