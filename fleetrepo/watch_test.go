package fleetrepo

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// startWatch runs watch in a goroutine owned by the test and returns the
// channel it wakes.
func startWatch(t *testing.T, watch func(context.Context, func()) error) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	woke := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := watch(ctx, func() {
			select {
			case woke <- struct{}{}:
			default:
			}
		}); err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitWake(t, woke, "the first wake")
	return woke
}

func waitWake(t *testing.T, woke <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-woke:
	case <-time.After(gittest.Deadline):
		t.Fatalf("watcher did not wake for %s within %s", what, gittest.Deadline)
	}
}

func TestWatchWakesOnPushAndForcePushIsRefused(t *testing.T) {
	transports(t, nil, func(t *testing.T, url, bare string) {
		ctx := testContext(t)
		// fsnotify for the local repository; a 50ms poll for the remote one.
		d, err := OpenDesired(ctx, DesiredOptions{URL: url, PollInterval: 50 * time.Millisecond})
		if url == bare {
			d, err = OpenDesired(ctx, DesiredOptions{URL: url, PollInterval: time.Hour})
		}
		if err != nil {
			t.Fatal(err)
		}
		woke := startWatch(t, d.Watch)
		first, err := d.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		second := gittest.PushFiles(t, url, "main", map[string]string{"a.cue": "package fleet\n"}, "a")
		waitWake(t, woke, "a push")
		if got, err := d.Fetch(ctx); err != nil || got.String() != second {
			t.Fatalf("Fetch = %s, %v; want %s", got, err, second)
		}
		gittest.ForcePush(t, url, "main", first.String())
		waitWake(t, woke, "a force-push")
		_, err = d.Fetch(ctx)
		var nd *NotDescendantError
		if !errors.As(err, &nd) {
			t.Fatalf("Fetch after force-push = %v, want *NotDescendantError", err)
		}
	})
}

func TestWatchIgnoresOtherRefsAndFollowsNewDirectories(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	ctx := testContext(t)
	sh := openShared(t, bare, "n1", nil)
	woke := startWatch(t, sh.Watch)
	// A new nested directory under refs/reconciler/: the watcher must add it.
	if err := sh.WriteReport(ctx, testReport("n1", "1.0.0")); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woke, "the first node report")
	if _, err := sh.Acquire(ctx, "web", 0, "n1", "r1", time.Minute); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woke, "a lease in a new directory")
	gittest.PushFiles(t, bare, "feature", map[string]string{"f": "f\n"}, "feature")
	select {
	case <-woke:
		t.Fatal("a push to refs/heads/feature woke the shared-state watcher")
	case <-time.After(4 * debounce):
	}
}

func TestSharedWatchPollsARemote(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	url := gittest.Serve(t, bare)
	ctx := testContext(t)
	watcher, err := OpenShared(ctx, SharedOptions{URL: url, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	woke := startWatch(t, watcher.Watch)
	if err := openShared(t, url, "n1", nil).Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
		return &reconciler.Event{Type: reconciler.EventPaused, Rollout: "r1", By: "n1"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woke, "an event appended over HTTP")
}

// A stream of shared-state writes in the same repository (other agents
// renewing leases) must not postpone waking for the tracked branch.
func TestWatchIsNotStarvedByOtherWrites(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	ctx := testContext(t)
	d, err := OpenDesired(ctx, DesiredOptions{URL: bare, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	woke := startWatch(t, d.Watch)
	busy, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // renew a lease as fast as possible until stopped
		defer close(done)
		sh := openShared(t, bare, "busy", nil)
		l, err := sh.Acquire(busy, "web", 0, "busy", "r1", time.Minute)
		for err == nil && busy.Err() == nil {
			l, err = sh.Renew(busy, l)
		}
	}()
	defer func() { stop(); <-done }()
	gittest.PushFiles(t, bare, "main", map[string]string{"a": "a\n"}, "a")
	select { // typically 150-300ms; a starved watcher waits for the stream to pause
	case <-woke:
	case <-time.After(3 * time.Second):
		t.Fatal("a push to main among a stream of lease renewals did not wake the watcher within 3s")
	}
}
