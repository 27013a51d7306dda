package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/fleetops/reconciler/release"
)

// errDownloading means a release is still being fetched in the background:
// the app is reported "upgrading" and the pass goes on with other apps.
var errDownloading = errors.New("release download in progress")

// downloads fetches and installs releases off the loop, one at a time per
// app, so that a slow or hung artifact server holds up only its own app
// (never another app's upgrade, never the loop that sees a new tip), and a
// new target for the app cancels the download of the old one.
//
// Invariant: at most one download per app; each runs in a goroutine owned
// by downloads, under a context that start derives from the caller's (the
// agent's run) and that cancel, retain or the agent's end cancels; wait
// returns once they have all ended.
type downloads struct {
	// background: downloads run in goroutines and Converge does not wait
	// for them (set by Run when it loops); otherwise (Once, a caller's own
	// Reconcile) get installs in the caller's goroutine.
	background bool
	ready      chan struct{} // a download ended: worth another pass

	mu      sync.Mutex
	wg      sync.WaitGroup
	running map[string]*download // by app
}

// download is one release being installed.
type download struct {
	key      string // what is downloaded: version and artifact
	cancel   context.CancelFunc
	finished chan struct{} // closed when m and err are set
	m        *release.Manifest
	err      error
}

func newDownloads() *downloads {
	return &downloads{ready: make(chan struct{}, 1), running: map[string]*download{}}
}

// get returns app's download of key, starting it with run when there is
// none (started); a download of another key is cancelled first (the target
// moved), and cancelled is its key.
func (d *downloads) get(ctx context.Context, app, key string, run func(context.Context) (*release.Manifest, error)) (dl *download, started bool, cancelled string) {
	d.mu.Lock()
	prev := d.running[app]
	if prev != nil && prev.key == key {
		d.mu.Unlock()
		return prev, false, ""
	}
	if prev != nil {
		prev.cancel()
		cancelled = prev.key
	}
	dctx, cancel := context.WithCancel(ctx)
	dl = &download{key: key, cancel: cancel, finished: make(chan struct{})}
	d.running[app] = dl
	d.mu.Unlock()
	work := func() {
		defer cancel()
		if prev != nil {
			<-prev.finished // it may install into the same directory
		}
		dl.m, dl.err = run(dctx)
		close(dl.finished)
	}
	if !d.background { // a single pass: install here, as before
		work()
		return dl, true, cancelled
	}
	d.wg.Go(func() {
		work()
		select {
		case d.ready <- struct{}{}:
		default:
		}
	})
	return dl, true, cancelled
}

// done reports whether the download has ended.
func (dl *download) done() bool {
	select {
	case <-dl.finished:
		return true
	default:
		return false
	}
}

// take returns the outcome of a finished download and forgets it; a
// running one gives errDownloading.
func (d *downloads) take(app string, dl *download) (*release.Manifest, error) {
	if !dl.done() {
		return nil, errDownloading
	}
	d.mu.Lock()
	if d.running[app] == dl {
		delete(d.running, app)
	}
	d.mu.Unlock()
	return dl.m, dl.err
}

// retain cancels and forgets the downloads of apps keep says no.
func (d *downloads) retain(keep func(app string) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for app, dl := range d.running {
		if !keep(app) {
			dl.cancel()
			delete(d.running, app)
		}
	}
}

// stop cancels every download and waits for them to end.
func (d *downloads) stop() {
	d.retain(func(string) bool { return false })
	d.wg.Wait()
}
