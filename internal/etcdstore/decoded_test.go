package etcdstore_test

import (
	"context"
	"testing"

	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// TestDecodedOnceFollowsTheRecord: handles sharing a Decoded read the same
// record as handles that do not, a garbage event is named by each reader's
// BadRefs, and a handle that finds a key rewritten by hand after another
// decoded it goes on alone with what it read, while the first keeps what
// it read before.
func TestDecodedOnceFollowsTheRecord(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	raw := rawClient(t, c)
	d := etcdstore.NewDecoded()
	a := open(t, c, "a", etcdstore.Options{Decoded: d})
	appendEvent := func(st *etcdstore.Store, e reconciler.Event) {
		t.Helper()
		if err := st.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }); err != nil {
			t.Fatal(err)
		}
	}
	nodes := func(st *etcdstore.Store) (out []string) {
		t.Helper()
		evs, err := st.Record(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			out = append(out, e.Type+":"+e.Node)
		}
		return out
	}
	appendEvent(a, reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", Target: "1.1.0"})
	if _, err := raw.Put(ctx, "/reconciler/rollouts/web/0000000002", "not json"); err != nil {
		t.Fatal(err)
	}
	appendEvent(a, reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: "n1"})
	want := "[started: node_done:n1]"
	b := open(t, c, "b", etcdstore.Options{Decoded: d})
	plain := open(t, c, "plain", etcdstore.Options{})
	for _, st := range []*etcdstore.Store{a, b, plain} {
		if got := nodes(st); fmtList(got) != want {
			t.Fatalf("%s reads %v, want %s", st.URL(), got, want)
		}
		if bad := st.BadRefs(); len(bad) != 1 {
			t.Fatalf("bad refs = %+v: want the garbage event named", bad)
		}
	}
	// Key 3 rewritten by hand: a newcomer sharing d finds it at another
	// revision than d holds and decodes it alone; a keeps its reading.
	if _, err := raw.Put(ctx, "/reconciler/rollouts/web/0000000003", `{"type":"node_done","rollout":"r1","node":"n9"}`); err != nil {
		t.Fatal(err)
	}
	late := open(t, c, "late", etcdstore.Options{Decoded: d})
	if got := fmtList(nodes(late)); got != "[started: node_done:n9]" {
		t.Fatalf("late reads %s, want the rewritten key", got)
	}
	appendEvent(b, reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: "n2"})
	if got := fmtList(nodes(a)); got != "[started: node_done:n1 node_done:n2]" {
		t.Fatalf("a reads %s", got)
	}
	if got := fmtList(nodes(late)); got != "[started: node_done:n9 node_done:n2]" {
		t.Fatalf("late reads %s", got)
	}
}
