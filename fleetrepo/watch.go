package fleetrepo

import (
	"context"
	"maps"
	"math/rand/v2"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// debounce is how long the watcher waits after the first file event of a
// burst before it re-reads the refs: a push is a burst of lock, write,
// rename and create.
const debounce = 150 * time.Millisecond

func defaultPoll(s *store) time.Duration {
	if s.gitDir != "" {
		return 30 * time.Second // a safety net under fsnotify
	}
	return 10 * time.Second
}

// Watch calls wake once when it starts and then whenever the tracked branch
// moves, until ctx is done; it returns nil then. It only notices: call Fetch
// to bring the change in (and to have a backwards move refused).
//
// A repository on this machine is watched with fsnotify on its refs/ tree
// and packed-refs: any event, or watcher error, re-reads the refs 150ms
// later; PollInterval polls as a safety net. A remote repository
// is polled with a ref listing every PollInterval (±10% jitter). With a
// negative PollInterval nothing is polled (the agent reads the branch at
// its own --poll: one listing, not two). wake runs
// on the watching goroutine and must not block for long: a non-blocking send
// on a channel of capacity 1 is the usual body.
func (d *Desired) Watch(ctx context.Context, wake func()) error {
	match := func(name plumbing.ReferenceName) bool { return name == d.ref }
	return d.s.watch(ctx, match, d.opts.PollInterval, wake)
}

// watch is the loop behind Desired.Watch and Shared.Watch.
func (s *store) watch(ctx context.Context, match func(plumbing.ReferenceName) bool, every time.Duration, wake func()) error {
	if every < 0 && s.gitDir == "" {
		wake() // a remote repository, not polled: nothing to watch
		<-ctx.Done()
		return nil
	}
	last, _ := s.listMatching(ctx, match)
	wake()
	n := newNotifier(s)
	defer n.close()
	var polls <-chan time.Time // nil: no polling (every < 0)
	poll := time.NewTimer(jitter(max(every, time.Second)))
	defer poll.Stop()
	if every > 0 {
		polls = poll.C
	}
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-n.events:
			n.follow(ev)
			settle = arm(settle)
		case err := <-n.errors:
			s.log.Debug("ref watcher error; re-reading refs", "repo", s.url, "err", err)
			settle = arm(settle)
		case <-settle:
			settle = nil
			last = s.recheck(ctx, match, last, wake)
		case <-polls:
			poll.Reset(jitter(every))
			last = s.recheck(ctx, match, last, wake)
		}
	}
}

// arm starts the settle timer unless it runs already: the re-read happens
// 150ms after the first event of a burst, so a stream of events (other
// agents' lease renewals in the same repository) cannot postpone it forever.
func arm(settle <-chan time.Time) <-chan time.Time {
	if settle != nil {
		return settle
	}
	return time.After(debounce)
}

// recheck lists the refs and wakes the caller when they differ from last.
func (s *store) recheck(ctx context.Context, match func(plumbing.ReferenceName) bool,
	last map[plumbing.ReferenceName]plumbing.Hash, wake func()) map[plumbing.ReferenceName]plumbing.Hash {
	cur, err := s.listMatching(ctx, match)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("watch: listing refs failed; will retry", "repo", s.url, "err", err)
		}
		return last
	}
	if !maps.Equal(cur, last) {
		wake()
	}
	return cur
}

func (s *store) listMatching(ctx context.Context, match func(plumbing.ReferenceName) bool) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	refs, err := s.list(ctx, "")
	if err != nil {
		return nil, err
	}
	maps.DeleteFunc(refs, func(n plumbing.ReferenceName, _ plumbing.Hash) bool { return !match(n) })
	return refs, nil
}

// jitter spreads d by ±10% so a fleet's pollers do not align.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d)/5+1))
}
