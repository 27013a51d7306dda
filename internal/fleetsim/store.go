package fleetsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/spec"
)

// Store is the shared state in memory with the compare-and-swap semantics
// of fleetrepo's refs/reconciler/* (internal/storetest holds every store to
// the same table): per app a rollout record, per app and slot a lease
// chain whose commit ids are the fencing tokens, per node a report. Each
// agent talks to it through its own Handle, which, like a fleetrepo.Shared,
// measures lease expiry from when it first saw each token, on its own clock.
//
// Every operation is atomic (the simulation's scheduler runs one at a time;
// the mutex is for the race detector and direct use in tests).
type Store struct {
	mu      sync.Mutex
	tokens  int
	records map[string][]reconciler.Event
	leases  map[slotKey][]leaseWrite // oldest first
	reports map[string]reconciler.NodeReport

	// onWrite, when set, is told of every write that landed (the
	// simulation's invariant checks), under mu.
	onWrite func(w storeWrite)
}

type slotKey struct {
	app  string
	slot int
}

// leaseWrite is one commit of a lease chain.
type leaseWrite struct {
	token  string
	doc    reconciler.Lease // Token and Unchanged unset
	at     time.Time        // writer's clock, informational
	global time.Time        // true time (the simulation's checks)
	note   string
}

// storeWrite describes a write for the invariant checks.
type storeWrite struct {
	kind   string // "lease", "event", "report"
	by     string // the handle's node
	lease  reconciler.Lease
	prev   reconciler.Lease // lease: the slot before
	event  reconciler.Event
	record []reconciler.Event // event: the record after
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{records: map[string][]reconciler.Event{}, leases: map[slotKey][]leaseWrite{},
		reports: map[string]reconciler.NodeReport{}}
}

// Fault is what the network does to one call of a Handle.
type Fault int

// Faults.
const (
	Deliver     Fault = iota // the call happens and its answer arrives
	Unreachable              // the call never reaches the store: a transient error
	LostAnswer               // a write lands but its answer is lost: a transient error
	Refused                  // the server refuses writes: ErrRejected
)

// Handle is one agent's connection to the Store: a rollout.Shared and a
// reporter. Its observations (when it first saw each lease token) are its
// own and are lost with it (an agent restart opens a new one).
type Handle struct {
	st    *Store
	node  string
	now   func() time.Time
	fault func(op string, write bool) Fault // nil: always Deliver

	mu   sync.Mutex
	seen map[slotKey]observation
	lost map[string]time.Time // lease writes that landed unanswered: when sent, by token
}

type observation struct {
	token string
	since time.Time
	own   bool
}

// Handle opens a connection for node, reading now as its clock; fault,
// when set, decides the fate of each call.
func (s *Store) Handle(node string, now func() time.Time, fault func(op string, write bool) Fault) *Handle {
	return &Handle{st: s, node: node, now: now, fault: fault, seen: map[slotKey]observation{}, lost: map[string]time.Time{}}
}

const repoName = "sim://fleet"

// begin applies the network to a call: an error to return before the
// call, or lost=true for a write whose answer must be dropped after it.
func (h *Handle) begin(op string, write bool) (lost bool, err error) {
	if h.fault == nil {
		return false, nil
	}
	switch h.fault(op, write) {
	case Unreachable:
		return false, &fleetrepo.TransientError{Op: op, Repo: repoName, Err: errors.New("connection refused (simulated partition)")}
	case Refused:
		if write {
			return false, fmt.Errorf("%s %s: %w (simulated)", op, repoName, fleetrepo.ErrRejected)
		}
	case LostAnswer:
		return write, nil
	}
	return false, nil
}

func lostErr(op string) error {
	return &fleetrepo.TransientError{Op: op, Repo: repoName, Err: errors.New("connection reset after the push was sent (simulated lost answer)")}
}

func (s *Store) nextToken() string {
	s.tokens++
	return fmt.Sprintf("%040x", s.tokens)
}

// current is the slot's newest write (zero when never used). Caller holds s.mu.
func (s *Store) current(k slotKey) (leaseWrite, bool) {
	ws := s.leases[k]
	if len(ws) == 0 {
		return leaseWrite{}, false
	}
	return ws[len(ws)-1], true
}

// observe mirrors fleetrepo's: the lease as this handle sees it now.
func (h *Handle) observe(k slotKey, w leaseWrite, now time.Time) reconciler.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.seen[k]
	if !ok || o.token != w.token {
		o = observation{token: w.token, since: now}
		h.seen[k] = o
	}
	l := w.doc
	l.App, l.Slot, l.Token, l.Unchanged = k.app, k.slot, w.token, now.Sub(o.since)
	return l
}

// write appends a lease commit and returns the lease as its writer sees it.
// Caller holds s.mu.
func (h *Handle) writeLease(k slotKey, doc reconciler.Lease, note string, now time.Time, lost bool) reconciler.Lease {
	s := h.st
	prevW, _ := s.current(k)
	prev := prevW.doc
	prev.Token = prevW.token
	w := leaseWrite{token: s.nextToken(), doc: doc, at: now, global: time.Now(), note: note}
	w.doc.Token, w.doc.Unchanged = "", 0
	s.leases[k] = append(s.leases[k], w)
	l := w.doc
	l.App, l.Slot, l.Token = k.app, k.slot, w.token
	if s.onWrite != nil {
		s.onWrite(storeWrite{kind: "lease", by: h.node, lease: l, prev: prev})
	}
	h.mu.Lock()
	if lost {
		h.lost[w.token] = now
	} else {
		h.seen[k] = observation{token: w.token, since: now, own: true}
	}
	h.mu.Unlock()
	return l
}

// Reports implements rollout.Shared.
func (h *Handle) Reports(ctx context.Context) (map[string]reconciler.NodeReport, error) {
	if _, err := h.begin("read node reports from", false); err != nil {
		return nil, fmt.Errorf("read node reports: %w", err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	return maps.Clone(h.st.reports), nil
}

// WriteReport is the reporter (fleetrepo.Shared.WriteReport).
func (h *Handle) WriteReport(ctx context.Context, r reconciler.NodeReport) error {
	lost, err := h.begin("push "+fleetrepo.NodesPrefix+r.Node+" to", true)
	if err != nil {
		return fmt.Errorf("write node report %s: %w", r.Node, err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	h.st.reports[r.Node] = r
	if h.st.onWrite != nil {
		h.st.onWrite(storeWrite{kind: "report", by: h.node})
	}
	if lost {
		return fmt.Errorf("write node report %s: %w", r.Node, lostErr("push"))
	}
	return nil
}

// Record implements rollout.Shared.
func (h *Handle) Record(ctx context.Context, app string) ([]reconciler.Event, error) {
	if _, err := h.begin("read rollout record "+app+" from", false); err != nil {
		return nil, fmt.Errorf("read rollout record %s: %w", app, err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	return slices.Clone(h.st.records[app]), nil
}

// Append implements rollout.Shared: decide sees the record as it is and
// returns the event to append or nil; its error is returned unwrapped.
// When another writer appended between the read and the swap, it reads
// again and calls decide again, as fleetrepo does (up to 20 times).
func (h *Handle) Append(ctx context.Context, app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	var err error
	for range 20 {
		if err = h.appendOnce(app, decide); !errors.Is(err, fleetrepo.ErrConflict) {
			return err
		}
	}
	return err
}

// AppendGuarded implements rollout.Shared as fleetrepo does: the append
// lands only if every slot of guard is still at its Token ("": never
// written; such a slot is created free with it), checked in the same
// atomic step; otherwise an error matching fleetrepo.ErrGuardMoved.
func (h *Handle) AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	seen := map[int]bool{}
	for _, l := range guard {
		if l.App != app || l.Slot < 0 || seen[l.Slot] {
			return fmt.Errorf("append to rollout record %s: bad lease guard %s/%d: want distinct slots of app %s", app, l.App, l.Slot, app)
		}
		seen[l.Slot] = true
	}
	var err error
	for range 20 {
		err = h.appendOnceGuarded(app, guard, decide)
		if !errors.Is(err, fleetrepo.ErrConflict) || errors.Is(err, fleetrepo.ErrGuardMoved) {
			return err
		}
	}
	return err
}

func (h *Handle) appendOnce(app string, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	return h.appendOnceGuarded(app, nil, decide)
}

func (h *Handle) appendOnceGuarded(app string, guard []reconciler.Lease, decide func([]reconciler.Event) (*reconciler.Event, error)) error {
	if _, err := h.begin("read rollout record "+app+" from", false); err != nil {
		return fmt.Errorf("read rollout record %s: %w", app, err)
	}
	h.st.mu.Lock()
	cur := slices.Clone(h.st.records[app])
	h.st.mu.Unlock()
	ev, err := decide(slices.Clone(cur))
	if err != nil || ev == nil {
		return err
	}
	lost, err := h.begin("push "+fleetrepo.RolloutPrefix+app+" to", true)
	if err != nil {
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, err)
	}
	if ev.Time.IsZero() {
		ev.Time = h.now()
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	if len(h.st.records[app]) != len(cur) { // another writer came first: decide again
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, fleetrepo.ErrConflict)
	}
	for _, l := range guard {
		if w, _ := h.st.current(slotKey{app, l.Slot}); w.token != l.Token {
			conflict := &fleetrepo.ConflictError{Repo: repoName, Ref: plumbing.ReferenceName(fmt.Sprintf("%s%s/%d", fleetrepo.LeasePrefix, app, l.Slot))}
			return fmt.Errorf("append %s to rollout record %s: %w: %w", ev.Type, app, fleetrepo.ErrGuardMoved, conflict)
		}
	}
	for _, l := range guard {
		if k := (slotKey{app, l.Slot}); l.Token == "" {
			h.writeLease(k, reconciler.Lease{Renewed: h.now()}, "created free by "+h.node+" with a verdict", h.now(), lost)
		}
	}
	h.st.records[app] = append(h.st.records[app], *ev)
	if h.st.onWrite != nil {
		h.st.onWrite(storeWrite{kind: "event", by: h.node, event: *ev, record: slices.Clone(h.st.records[app])})
	}
	if lost {
		return fmt.Errorf("append %s to rollout record %s: %w", ev.Type, app, lostErr("push"))
	}
	return nil
}

// Leases implements rollout.Shared: every slot ever used, by slot.
func (h *Handle) Leases(ctx context.Context, app string) ([]reconciler.Lease, error) {
	if _, err := h.begin("list leases of "+app+" in", false); err != nil {
		return nil, fmt.Errorf("read leases of %s: %w", app, err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	now := h.now()
	var out []reconciler.Lease
	for k, ws := range h.st.leases {
		if k.app == app && len(ws) > 0 {
			out = append(out, h.observe(k, ws[len(ws)-1], now))
		}
	}
	slices.SortFunc(out, func(a, b reconciler.Lease) int { return cmp.Compare(a.Slot, b.Slot) })
	return out, nil
}

// Acquire implements rollout.Shared with fleetrepo's rule: the slot is
// free, expired as this handle sees it, or already the holder's.
func (h *Handle) Acquire(ctx context.Context, app string, slot int, holder, rollout string, ttl time.Duration) (reconciler.Lease, error) {
	if slot < 0 || holder == "" || ttl <= 0 {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d: need a slot >= 0, a holder and a positive TTL", app, slot)
	}
	if err := spec.CheckName("app", app); err != nil { // as fleetrepo: a name that cannot be a ref
		return reconciler.Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	if _, err := h.begin("list leases of "+app+" in", false); err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d: %w", app, slot, err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	k := slotKey{app, slot}
	w, _ := h.st.current(k)
	cur := h.observe(k, w, h.now())
	if cur.Held() && !cur.Expired() && cur.Holder != holder {
		return cur, fmt.Errorf("acquire lease %s/%d: held by %s for rollout %s, unchanged for %s of its %s TTL: %w",
			app, slot, cur.Holder, cur.Rollout, cur.Unchanged, cur.TTL, fleetrepo.ErrLeaseHeld)
	}
	lost, err := h.begin("push "+fleetrepo.LeasePrefix+app+" to", true)
	if err != nil {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d for %s: %w", app, slot, holder, err)
	}
	now := h.now()
	doc := reconciler.Lease{Holder: holder, Rollout: rollout, Acquired: now, Renewed: now, TTL: ttl}
	l := h.writeLease(k, doc, "acquired", now, lost)
	if lost {
		return reconciler.Lease{}, fmt.Errorf("acquire lease %s/%d for %s: %w", app, slot, holder, lostErr("push"))
	}
	return h.observeOwn(k, l), nil
}

// observeOwn is the lease just written as its writer sees it (Unchanged 0).
func (h *Handle) observeOwn(k slotKey, l reconciler.Lease) reconciler.Lease {
	l.App, l.Slot, l.Unchanged = k.app, k.slot, 0
	return l
}

// Renew implements rollout.Shared: a compare-and-swap on l.Token.
func (h *Handle) Renew(ctx context.Context, l reconciler.Lease) (reconciler.Lease, error) {
	return h.rewrite(l, "renew", func(doc *reconciler.Lease, now time.Time) string {
		doc.Renewed = now
		return "renewed"
	})
}

// Release implements rollout.Shared.
func (h *Handle) Release(ctx context.Context, l reconciler.Lease) error {
	_, err := h.rewrite(l, "release", func(doc *reconciler.Lease, now time.Time) string {
		*doc = reconciler.Lease{TTL: l.TTL, Renewed: now}
		return "released by " + l.Holder
	})
	return err
}

func (h *Handle) rewrite(l reconciler.Lease, op string, edit func(*reconciler.Lease, time.Time) string) (reconciler.Lease, error) {
	if l.App == "" || l.Slot < 0 || l.Token == "" || l.Holder == "" {
		return l, fmt.Errorf("%s lease %s/%d: not a held lease", op, l.App, l.Slot)
	}
	lost, err := h.begin("push "+fleetrepo.LeasePrefix+l.App+" to", true)
	if err != nil {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w", op, l.App, l.Slot, l.Holder, err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	k := slotKey{l.App, l.Slot}
	w, _ := h.st.current(k)
	if w.token != l.Token && !h.st.ownSuccessor(k, l) {
		conflict := &fleetrepo.ConflictError{Repo: repoName}
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w: %w", op, l.App, l.Slot, l.Holder, fleetrepo.ErrLeaseLost, conflict)
	}
	now := h.now()
	if op == "renew" && h.expired(k, l, now) {
		// Mirrors fleetrepo: an expired lease is renewed only when a write
		// of this holding, sent within the TTL, landed unanswered.
		h.mu.Lock()
		sent, ok := h.lost[w.token]
		h.mu.Unlock()
		if w.token == l.Token || !ok || now.Sub(sent) >= l.TTL {
			return l, fmt.Errorf("renew lease %s/%d held by %s: %w: expired on this node's clock", l.App, l.Slot, l.Holder, fleetrepo.ErrLeaseLost)
		}
	}
	doc := reconciler.Lease{Holder: l.Holder, Rollout: l.Rollout, Acquired: l.Acquired, Renewed: l.Renewed, TTL: l.TTL}
	note := edit(&doc, now)
	next := h.writeLease(k, doc, note, now, lost)
	if lost {
		return l, fmt.Errorf("%s lease %s/%d held by %s: %w", op, l.App, l.Slot, l.Holder, lostErr("push"))
	}
	return h.observeOwn(k, next), nil
}

// ownSuccessor mirrors fleetrepo's: the slot moved past l.Token only
// through writes of the same holding (same holder, rollout, acquisition
// and TTL), at most 16: renewals of its own whose answers were lost, which
// the holder adopts. Caller holds s.mu.
func (s *Store) ownSuccessor(k slotKey, l reconciler.Lease) bool {
	ws := s.leases[k]
	for i, n := len(ws)-1, 0; i >= 0 && n < 16; i, n = i-1, n+1 {
		d := ws[i].doc
		if d.Holder != l.Holder || d.Rollout != l.Rollout || !d.Acquired.Equal(l.Acquired) || d.TTL != l.TTL {
			return false
		}
		if i > 0 && ws[i-1].token == l.Token {
			return true
		}
	}
	return false
}

// expired mirrors fleetrepo's expiredLocked: this handle's last write to
// the slot (seen land, or landed unanswered) is older than l's TTL.
func (h *Handle) expired(k slotKey, l reconciler.Lease, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.seen[k]
	if sent, lost := h.lost[o.token]; ok && lost {
		return now.Sub(sent) >= l.TTL
	}
	return ok && o.own && now.Sub(o.since) >= l.TTL
}

// Validity mirrors fleetrepo.Shared.Validity: l.TTL minus the time since
// this handle sent the write that made l.Token; 0 for a lease it did not
// write.
func (h *Handle) Validity(l reconciler.Lease) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.seen[slotKey{l.App, l.Slot}]
	if !ok || !o.own || o.token != l.Token {
		return 0
	}
	return l.TTL - h.now().Sub(o.since)
}

// LeaseHistory mirrors fleetrepo.Shared.LeaseHistory: the slot's writes,
// newest first, at most limit (0: all).
func (h *Handle) LeaseHistory(ctx context.Context, app string, slot int, limit int) ([]reconciler.Lease, error) {
	if _, err := h.begin("read lease history of "+app+" from", false); err != nil {
		return nil, fmt.Errorf("lease history of %s/%d: %w", app, slot, err)
	}
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	ws := h.st.leases[slotKey{app, slot}]
	var out []reconciler.Lease
	for i := len(ws) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		l := ws[i].doc
		l.App, l.Slot, l.Token = app, slot, ws[i].token
		out = append(out, l)
	}
	return out, nil
}

// dump is the store's content for a failing seed's log.
func (s *Store) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, app := range slices.Sorted(maps.Keys(s.records)) {
		fmt.Fprintf(&b, "record %s:\n", app)
		for _, e := range s.records[app] {
			fmt.Fprintf(&b, "  %s by %s lease %.8s\n", e.Summary(), e.By, e.Lease)
		}
	}
	keys := slices.SortedFunc(maps.Keys(s.leases), func(a, b slotKey) int { return cmp.Or(strings.Compare(a.app, b.app), a.slot-b.slot) })
	for _, k := range keys {
		fmt.Fprintf(&b, "lease %s/%d:", k.app, k.slot)
		for _, w := range s.leases[k] {
			fmt.Fprintf(&b, " %s:%s(%s)", w.token[len(w.token)-4:], cmp.Or(w.doc.Holder, "-"), w.note)
		}
		b.WriteString("\n")
	}
	return b.String()
}
