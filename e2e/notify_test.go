package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetops/reconciler/internal/notify"
	"github.com/fleetops/reconciler/reconciler"
)

// eventReceiver is the test's CloudEvents receiver: every POST must carry
// a valid X-Reconciler-Signature; it counts each id.
type eventReceiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	got    []notify.CloudEvent
	ids    map[string]int
	bad    int
}

func (r *eventReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !notify.Verify(r.secret, body, req.Header.Get(notify.SignatureHeader)) {
		r.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var e notify.CloudEvent
	if ct := req.Header.Get("Content-Type"); ct != notify.ContentType || json.Unmarshal(body, &e) != nil {
		r.bad++
		http.Error(w, "not a structured CloudEvent", http.StatusBadRequest)
		return
	}
	r.got = append(r.got, e)
	r.ids[e.ID]++
}

func (r *eventReceiver) has(ids []string) (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	missing := 0
	for _, id := range ids {
		if r.ids[id] == 0 {
			missing++
		}
	}
	return missing == 0, fmt.Sprintf("missing %d of %d", missing, len(ids))
}

// expected is every CloudEvent the record of app stands for, by id.
func (f *fleet) expected(app string) map[string]notify.CloudEvent {
	rec := f.record(app)
	out := map[string]notify.CloudEvent{}
	for i := range rec {
		for _, e := range notify.FromRecord(f.url, app, rec, i) {
			out[e.ID] = e
		}
	}
	return out
}

// TestNotifications (issue 15, section 2): 3 real agents with --notify to
// a receiver that is down (connection refused) during a rolling upgrade to
// 1.1.0; it comes back; a canary of the broken 1.2.0 fails its health check
// and is rolled back. The receiver ends up with every event of the record
// exactly once (each id once, none it does not stand for), each signed;
// `reconciler events --follow --output json` streamed the same events.
func TestNotifications(t *testing.T) { notifications(t, newFleet) }

// TestEtcdNotifications is TestNotifications with the shared state in
// etcd: the record events come from etcd, the ids are the same for the
// agents and for `reconciler events --shared etcd://...`.
func TestEtcdNotifications(t *testing.T) { notifications(t, newEtcdFleet) }

func notifications(t *testing.T, newFleet func(testing.TB, int, ...string) *fleet) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connection refused until the receiver starts
	secret := filepath.Join(t.TempDir(), "notify.key")
	if err := os.WriteFile(secret, []byte("fleet-notify-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t, 3, "--notify", "http://"+addr+"/events", "--notify-secret-file", secret, "--notify-max-backoff", "2s")
	up := f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 1`}, "web 1.1.0")
	f.eventually(2*time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == up && r.Outcome == reconciler.OutcomeCompleted, "rollout of 1.1.0 not complete"
	}, "the rollout of 1.1.0 to complete, receiver down")

	// SIGKILL the agent with the most events queued, and restart it: its
	// outbox survives, and nothing is sent twice or lost.
	pending := f.pendingByAgent()
	victim := f.agents[0]
	for _, a := range f.agents {
		if pending[a.Name] > pending[victim.Name] {
			victim = a
		}
	}
	if pending[victim.Name] == 0 {
		t.Fatalf("reconciler_notifications_pending is 0 on every agent with the receiver down after a rollout: %v", pending)
	}
	victim.Kill()
	f.eventually(10*time.Second, func() (bool, string) { return !victim.Running(), "still running" }, victim.Name+" to die")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	f.waitAll("1.1.0", time.Minute)
	f.eventually(30*time.Second, func() (bool, string) {
		n := f.pendingByAgent()[victim.Name]
		return n == pending[victim.Name], fmt.Sprintf("%d pending after the restart, %d before", n, pending[victim.Name])
	}, "the restarted agent's outbox")
	t.Logf("%s killed and restarted with %d events queued", victim.Name, pending[victim.Name])

	rcv := &eventReceiver{t: t, secret: []byte("fleet-notify-key"), ids: map[string]int{}}
	srv := &http.Server{Handler: rcv, ReadHeaderTimeout: 5 * time.Second}
	var rl net.Listener
	f.eventually(10*time.Second, func() (bool, string) {
		rl, err = net.Listen("tcp", addr)
		return err == nil, "listen: " + errString(err)
	}, "the receiver's address")
	go srv.Serve(rl)
	t.Cleanup(func() { srv.Close() })

	follow := exec.Command(lab.Reconciler, append([]string{"events", "web", "--follow", "--output", "json", "--repo", f.url}, f.sharedFlags()...)...)
	follow.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = follow.Process.Kill(); _ = follow.Wait() })
	streamed := make(chan notify.CloudEvent, 100)
	go func() {
		defer close(streamed)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e notify.CloudEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				streamed <- e
			}
		}
	}()

	bad := f.push(specOptions{version: "1.2.0", rollout: `strategy: "canary", batchSize: 2, canary: {count: 1, monitor: "3s"}`}, "web 1.2.0")
	f.eventually(2*time.Minute, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		return r != nil && r.ID == bad && r.Outcome == reconciler.OutcomeRolledBack, "1.2.0 not rolled back"
	}, "the rollback of 1.2.0")
	f.waitAll("1.1.0", time.Minute)

	want := f.expected("web")
	ids := slices.Collect(maps.Keys(want))
	f.eventually(time.Minute, func() (bool, string) { return rcv.has(ids) }, "every event at the receiver")
	f.eventually(30*time.Second, func() (bool, string) {
		n := f.pendingByAgent()
		return n["total"] == 0, fmt.Sprintf("pending %v", n)
	}, "the outboxes to empty")
	out, err := f.cli("events", "web")
	if err != nil || !strings.Contains(out, "web rollback.committed: 1.2.0 -> 1.1.0 by commit ") || !strings.Contains(out, "web health.failed: 1.2.0 on node-1") {
		t.Errorf("events web: %v\n%s", err, out)
	}
	for _, a := range f.agents { // nothing can arrive after this
		a.Stop()
	}
	f.eventually(30*time.Second, func() (bool, string) {
		for _, a := range f.agents {
			if a.Running() {
				return false, a.Name + " still running"
			}
		}
		return true, ""
	}, "the agents to stop")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.bad != 0 {
		t.Fatalf("%d POSTs without a valid signature or CloudEvent", rcv.bad)
	}
	types := map[string]int{}
	for id, n := range rcv.ids {
		e, ok := want[id]
		switch {
		case !ok:
			t.Errorf("received id %s, which no record event stands for", id)
		case n != 1:
			t.Errorf("%s %s received %d times", e.Type, id, n)
		}
		types[e.Short()]++
	}
	for _, typ := range []string{notify.Started, notify.WaveStarted, notify.WaveDone, notify.NodeUpgraded,
		notify.NodeFailed, notify.HealthFailed, notify.Failed, notify.RollbackStarted, notify.RollbackCommitted, notify.Completed} {
		if types[typ] == 0 {
			t.Errorf("no %s event received (got %v)", typ, types)
		}
	}
	if types[notify.NodeUpgraded] < 6 { // 3 nodes to 1.0.0, then to 1.1.0
		t.Errorf("%d node.upgraded events, want at least 6", types[notify.NodeUpgraded])
	}
	for _, e := range rcv.got {
		if e.SpecVersion != "1.0" || e.Subject != "web" || !strings.HasPrefix(e.Type, notify.TypePrefix) ||
			e.Source != f.url+"#"+e.Node || e.Data.By != e.Node {
			t.Errorf("event %+v: want specversion 1.0, subject web, source %s#<node>", e, f.url)
		}
	}

	// events --follow printed the 1.2.0 rollout's events as they came (it
	// reads the record when the store's watch wakes it, or every 2 s): the
	// same ids, up to rollback.committed.
	var seen []string
	deadline := time.After(30 * time.Second)
	for !slices.Contains(seen, notify.RollbackCommitted) {
		select {
		case e, ok := <-streamed:
			if !ok {
				t.Fatalf("events --follow ended; printed %v for the 1.2.0 rollout", seen)
			}
			if e.Rollout != bad {
				continue
			}
			seen = append(seen, e.Short())
			if _, ok := want[e.ID]; !ok {
				t.Errorf("events --follow printed %s %s, not an id the receiver expects", e.Type, e.ID)
			}
		case <-deadline:
			t.Fatalf("events --follow printed %v for the 1.2.0 rollout in 30s: want it up to rollback.committed", seen)
		}
	}
	if seen[0] != notify.Started {
		t.Errorf("events --follow printed %v for the 1.2.0 rollout: want it from started", seen)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err.Error()
	}
	return err.Error()
}

// pendingByAgent reads reconciler_notifications_pending from each agent's
// /metrics, by node, and their sum as "total".
func (f *fleet) pendingByAgent() map[string]int {
	f.t.Helper()
	out := map[string]int{}
	for _, a := range f.agents {
		resp, err := http.Get("http://" + a.Healthz + "/metrics")
		if err != nil {
			f.t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			f.t.Fatal(err)
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "reconciler_notifications_pending "); ok {
				var n float64
				if _, err := fmt.Sscan(v, &n); err != nil {
					f.t.Fatalf("%s: %q: %v", a.Name, line, err)
				}
				out[a.Name] = int(n)
				out["total"] += int(n)
				found = true
			}
		}
		if !found {
			f.t.Fatalf("%s: no reconciler_notifications_pending in /metrics", a.Name)
		}
	}
	return out
}
