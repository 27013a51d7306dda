package fleetrepo

import (
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// notifier watches a local repository's refs/ tree and top directory (for
// packed-refs) with fsnotify. Watches are not recursive, so it adds every
// directory under refs/ and each one created later. For a remote repository,
// or when fsnotify fails, its channels are nil and polling alone remains.
type notifier struct {
	w      *fsnotify.Watcher
	refs   string // <gitDir>/refs
	events chan fsnotify.Event
	errors <-chan error
}

func newNotifier(s *store) *notifier {
	n := &notifier{}
	if s.gitDir == "" {
		return n
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("fsnotify unavailable; polling only", "repo", s.url, "err", err)
		return n
	}
	if err := w.Add(s.gitDir); err != nil {
		s.log.Warn("fsnotify: cannot watch the repository; polling only", "dir", s.gitDir, "err", err)
	}
	n.w, n.refs, n.errors = w, filepath.Join(s.gitDir, "refs"), w.Errors
	n.addTree(n.refs)
	n.events = make(chan fsnotify.Event)
	go n.filter(s.gitDir)
	return n
}

// filter forwards events that may mean a ref moved: anything under refs/,
// and packed-refs in the top directory. It exits when the watcher closes.
func (n *notifier) filter(gitDir string) {
	defer close(n.events)
	for ev := range n.w.Events {
		if filepath.Dir(ev.Name) == gitDir && !strings.HasPrefix(filepath.Base(ev.Name), "packed-refs") {
			continue
		}
		n.events <- ev
	}
}

// follow adds directories created under refs/ to the watch.
func (n *notifier) follow(ev fsnotify.Event) {
	if ev.Has(fsnotify.Create) && strings.HasPrefix(ev.Name, n.refs) {
		n.addTree(ev.Name)
	}
}

// addTree watches dir and every directory below it. Errors are ignored: a
// directory that vanished needs no watch, and the poll covers the rest.
func (n *notifier) addTree(dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error { //nolint:errcheck
		if err == nil && d.IsDir() {
			n.w.Add(path) //nolint:errcheck
		}
		return nil
	})
}

// close stops the watcher and waits for the filter goroutine to exit.
func (n *notifier) close() {
	if n.w == nil {
		return
	}
	n.w.Close()
	for range n.events {
	}
}
