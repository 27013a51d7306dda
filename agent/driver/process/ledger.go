package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// LedgerName is the file, in the first socket directory, where the driver
// records the unix sockets it bound (path, device and inode), so that it
// removes only sockets it created itself, also after a restart.
const LedgerName = ".reconciler-sockets.json"

// ledger records the unix socket files the driver bound.
type ledger struct {
	path string
	mu   sync.Mutex
}

// fileID is a file's device and inode.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino}, true
}

func (l *ledger) loadLocked() map[string]fileID {
	m := map[string]fileID{}
	if b, err := os.ReadFile(l.path); err == nil {
		_ = json.Unmarshal(b, &m) // an unreadable ledger knows no socket: nothing is removed
	}
	return m
}

func (l *ledger) storeLocked(m map[string]fileID) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("socket ledger %s: %w", l.path, err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("socket ledger %s: %w", l.path, err)
	}
	return nil
}

// add records the socket file the driver just bound at p.
func (l *ledger) add(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("socket ledger: %w", err)
	}
	id, ok := idOf(fi)
	if !ok {
		return errors.New("socket ledger: no inode")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.loadLocked()
	m[p] = id
	return l.storeLocked(m)
}

// created reports whether fi (an lstat of p) is the socket the driver bound
// at p.
func (l *ledger) created(p string, fi fs.FileInfo) bool {
	id, ok := idOf(fi)
	if !ok {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	got, ok := l.loadLocked()[p]
	return ok && got == id
}

// forget drops p from the ledger.
func (l *ledger) forget(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.loadLocked()
	if _, ok := m[p]; ok {
		delete(m, p)
		_ = l.storeLocked(m)
	}
}

func newLedger(dirs []string) *ledger {
	if len(dirs) == 0 {
		return nil
	}
	return &ledger{path: filepath.Join(dirs[0], LedgerName)}
}
