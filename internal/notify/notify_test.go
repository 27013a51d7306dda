package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// receiver is a test CloudEvents receiver: it verifies each POST's
// signature and counts ids; while down it answers 503.
type receiver struct {
	t      *testing.T
	secret []byte
	down   atomic.Bool
	mu     sync.Mutex
	got    []CloudEvent
	ids    map[string]int
	bodies []string
}

func newReceiver(t *testing.T, secret []byte) (*receiver, *httptest.Server) {
	r := &receiver{t: t, secret: secret, ids: map[string]int{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if !Verify(r.secret, body, req.Header.Get(SignatureHeader)) {
		r.t.Errorf("bad signature %q on %s", req.Header.Get(SignatureHeader), body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, string(body))
	if ct := req.Header.Get("Content-Type"); ct != ContentType {
		return // slack: counted as bodies only
	}
	var e CloudEvent
	if err := json.Unmarshal(body, &e); err != nil {
		r.t.Errorf("not a CloudEvent: %v: %s", err, body)
		return
	}
	r.got = append(r.got, e)
	r.ids[e.ID]++
}

func (r *receiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.got {
		out = append(out, e.Short())
	}
	return out
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memStore is an in-memory rollout record with Append's contract; lose
// makes the next n appends lose a race first (decide is called again).
type memStore struct {
	mu   sync.Mutex
	recs map[string][]reconciler.Event
	lose int
	fail error
}

func (m *memStore) Append(_ context.Context, app string, decide Decide) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		ev, err := decide(slices.Clone(m.recs[app]))
		if err != nil || ev == nil {
			return err
		}
		if m.fail != nil {
			return m.fail
		}
		if m.lose > 0 {
			m.lose--
			m.recs[app] = append(m.recs[app], reconciler.Event{Type: reconciler.EventPaused, Rollout: "c1", By: "other", Time: time.Unix(int64(len(m.recs[app])), 0)})
			continue
		}
		m.recs[app] = append(m.recs[app], *ev)
		return nil
	}
}

func (m *memStore) Record(_ context.Context, app string) ([]reconciler.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.recs[app]), nil
}

func appendEv(t *testing.T, rec *Recorder, st *memStore, ev reconciler.Event) {
	t.Helper()
	if err := rec.Append(context.Background(), st, "web", func([]reconciler.Event) (*reconciler.Event, error) {
		e := ev
		return &e, nil
	}); err != nil {
		t.Fatal(err)
	}
}

var rollout = []reconciler.Event{
	{Type: reconciler.EventStarted, Rollout: "c1", By: "n1", Target: "1.1.0", From: "1.0.0", Waves: [][]string{{"n1"}, {"n2", "n3"}}},
	{Type: reconciler.EventNodeDone, Rollout: "c1", By: "n1", Node: "n1"},
	{Type: reconciler.EventWaveDone, Rollout: "c1", By: "n1", Wave: 0},
	{Type: reconciler.EventNodeDone, Rollout: "c1", By: "n2", Node: "n2"},
	{Type: reconciler.EventNodeFailed, Rollout: "c1", By: "n3", Node: "n3", Reason: "health http://127.0.0.1:1/health: status 500"},
	{Type: reconciler.EventFailed, Rollout: "c1", By: "n3", Node: "n3", Reason: "failed on n3"},
	{Type: reconciler.EventRolledBack, Rollout: "c1", By: "n2", RollbackCommit: "abc", Target: "1.0.0"},
}

// TestOutboxDeliversOnceAcrossOutageAndRestart: events appended while the
// receiver is down are delivered once it is back, after a restart of the
// outbox (a new Open on the same directory), each id once, signed.
func TestOutboxDeliversOnceAcrossOutageAndRestart(t *testing.T) {
	secret := []byte("s3cret")
	r, srv := newReceiver(t, secret)
	r.down.Store(true)
	dir := t.TempDir()
	opts := Options{Dir: dir, Fleet: "https://u:p@git.example.com/fleet.git", Secret: secret,
		Targets: []Target{{URL: srv.URL}}, MaxBackoff: 20 * time.Millisecond}
	ob, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	st := &memStore{recs: map[string][]reconciler.Event{}, lose: 1}
	rec := &Recorder{Outbox: ob}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ob.Run(ctx, st) }()
	for _, ev := range rollout[:4] {
		appendEv(t, rec, st, ev)
	}
	waitFor(t, "queued events", func() bool { return ob.Pending()[srv.URL] == 6 })
	cancel()
	<-done // the agent stops with the receiver still down

	ob, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	rec = &Recorder{Outbox: ob}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx, st)
	for _, ev := range rollout[4:] {
		appendEv(t, rec, st, ev)
	}
	r.down.Store(false)
	want := []string{Started, WaveStarted, NodeUpgraded, WaveDone, WaveStarted, NodeUpgraded, NodeFailed, HealthFailed, Failed, RollbackStarted, RollbackCommitted}
	waitFor(t, "every event delivered", func() bool { return len(r.types()) >= len(want) })
	if got := r.types(); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for id, n := range r.ids {
		if n != 1 {
			t.Errorf("id %s delivered %d times", id, n)
		}
	}
	e := r.got[0]
	if e.SpecVersion != "1.0" || e.Type != "dev.reconciler.rollout.started" || e.Subject != "web" ||
		e.Source != "https://git.example.com/fleet.git#n1" || e.Data.Target != "1.1.0" || e.Data.Waves != 2 {
		t.Fatalf("first event = %+v", e)
	}
	// The ids are those any reader of the record derives.
	var all []string
	recd, _ := st.Record(ctx, "web")
	for i := range recd {
		for _, c := range FromRecord(opts.Fleet, "web", recd, i) {
			all = append(all, c.ID)
		}
	}
	for id := range r.ids {
		if !slices.Contains(all, id) {
			t.Errorf("delivered id %s is not derived from the record", id)
		}
	}
}

// TestResolveStagedAfterCrash: an event staged by an agent killed during
// its append is queued on restart when the record holds it, and dropped
// when it does not.
func TestResolveStagedAfterCrash(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Targets: []Target{{URL: "http://127.0.0.1:1/"}}}
	ob, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	in, out := rollout[0], rollout[1]
	in.Time, out.Time = time.Unix(1, 0), time.Unix(2, 0)
	if _, err := ob.Stage("web", nil, in); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.Stage("web", []reconciler.Event{in}, out); err != nil {
		t.Fatal(err)
	}
	st := &memStore{recs: map[string][]reconciler.Event{"web": {in}}} // out was never appended
	ob, err = Open(opts)                                              // the restart
	if err != nil {
		t.Fatal(err)
	}
	if left := ob.Resolve(context.Background(), st); left != 0 {
		t.Fatalf("%d left unresolved", left)
	}
	if n := ob.Pending()[opts.Targets[0].URL]; n != 2 { // started + wave.started
		t.Fatalf("%d queued, want the 2 events of started only", n)
	}
}

// TestSlackFormat posts {"text": ...}, signed too.
func TestSlackFormat(t *testing.T) {
	r, srv := newReceiver(t, []byte("k"))
	ob, err := Open(Options{Dir: t.TempDir(), Secret: []byte("k"), Targets: []Target{{URL: srv.URL, Format: FormatSlack}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx, &memStore{})
	st := &memStore{recs: map[string][]reconciler.Event{}}
	appendEv(t, &Recorder{Outbox: ob}, st, rollout[0])
	waitFor(t, "two messages", func() bool { return r.count() == 2 })
	var msg map[string]string
	if err := json.Unmarshal([]byte(r.bodies[0]), &msg); err != nil || msg["text"] != ":information_source: web started: 1.0.0 -> 1.1.0 in 2 waves [by n1]" {
		t.Fatalf("slack body %s (%v)", r.bodies[0], err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	sig := Sign([]byte("k"), body)
	if !Verify([]byte("k"), body, sig) || Verify([]byte("x"), body, sig) || Verify([]byte("k"), []byte(`{"a":2}`), sig) || Verify([]byte("k"), body, "") {
		t.Fatal("Verify disagrees with Sign")
	}
}
