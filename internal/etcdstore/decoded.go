package etcdstore

import (
	"sync"

	"github.com/fleetops/reconciler/reconciler"
)

// Decoded holds rollout records' events decoded once for every Store of
// one process that is given it (Options.Decoded): an event key is written
// once, so a key at a given mod revision decodes to the same event for
// every reader. Without it, each of the 10,000 simulated nodes of
// internal/scale kept its own decoded copy of a record of 10,000 events:
// most of a node's memory, O(nodes²) in all (docs/scale.md).
//
// A Store follows a shared record key by key; at the first key that is not
// the one the record holds next (rewritten by hand, so at another mod
// revision), that Store goes on with a private copy. The events handed out
// are read-only, as Record's always were.
type Decoded struct {
	mu      sync.Mutex
	records map[string]*decodedRecord // record key prefix -> what was decoded
}

// NewDecoded returns an empty Decoded.
func NewDecoded() *Decoded { return &Decoded{records: map[string]*decodedRecord{}} }

// decodedKey is one event key as read: its sequence number and mod revision.
type decodedKey struct{ seq, rev int64 }

// decodedRecord is one record's keys in sequence order, why each that did
// not decode was skipped (nil: it decoded), and the events that decoded.
type decodedRecord struct {
	keys   []decodedKey
	bad    []error
	events []reconciler.Event
}

// next returns the outcome of the record's key number pos (0-based), which
// a reader found at (seq, rev) with the given value: nil when it decoded
// (it is then the reader's next event), or why it is skipped. When the
// record's key pos is another one, ok is false: the reader must go on
// alone. A key no reader has seen yet is decoded here, once.
func (d *Decoded) next(prefix string, pos int, seq, rev int64, value []byte) (bad error, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.records[prefix]
	if r == nil {
		r = &decodedRecord{}
		d.records[prefix] = r
	}
	k := decodedKey{seq, rev}
	if pos < len(r.keys) {
		return r.bad[pos], r.keys[pos] == k
	}
	if pos > len(r.keys) {
		return nil, false
	}
	var ev reconciler.Event
	bad = readEvent(value, &ev)
	r.keys, r.bad = append(r.keys, k), append(r.bad, bad)
	if bad == nil {
		r.events = append(r.events, ev)
	}
	return bad, true
}

// events returns the record's first n decoded events, capped: appending
// to the view never writes into the shared array.
func (d *Decoded) events(prefix string, n int) []reconciler.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.records[prefix]; r != nil {
		return r.events[:n:n]
	}
	return nil
}
