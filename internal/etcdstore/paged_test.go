package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// TestRecordReadKeepsEachPage: a record is read a page at a time, and what
// a read got before a page failed is kept: the next read asks only for the
// rest. Keys under the record that are no events (written by hand) do not
// stop the read, however many pages of them there are.
func TestRecordReadKeepsEachPage(t *testing.T) {
	c := cluster(t, 1)
	ctx := context.Background()
	w := open(t, c, "w", etcdstore.Options{})
	for i := range 10 {
		e := reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: fmt.Sprint("n", i)}
		if i == 0 {
			e = reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", Target: "1.1.0"}
		}
		if err := w.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var starts []string // the first key of each range read of the record
	failAt := 0         // fail the range read with this number (1-based; 0: none)
	refused := errors.New("injected: the server did not answer in time")
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialOptions: []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if rr, ok := req.(*pb.RangeRequest); ok && strings.Contains(string(rr.Key), "/rollouts/") {
				mu.Lock()
				starts = append(starts, string(rr.Key))
				fail := len(starts) == failAt
				mu.Unlock()
				if fail {
					return refused
				}
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	reads := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := starts
		starts, failAt = nil, 0
		return out
	}

	r := open(t, c, "r", etcdstore.Options{Client: cli, RecordPage: 4})
	mu.Lock()
	failAt = 3
	mu.Unlock()
	if _, err := r.Record(ctx, "web"); !errors.Is(err, refused) {
		t.Fatalf("read with its third page refused: %v, want that error", err)
	}
	if got := reads(); len(got) != 3 || !strings.HasSuffix(got[2], "/0000000008\x00") {
		t.Fatalf("first read asked from %q: want three pages, the third past event 8", got)
	}
	evs, err := r.Record(ctx, "web")
	if err != nil || len(evs) != 10 || evs[9].Node != "n9" {
		t.Fatalf("second read = %d events, %v: want all 10", len(evs), err)
	}
	if got := reads(); len(got) != 1 || !strings.HasSuffix(got[0], "/0000000009") {
		t.Fatalf("second read asked from %q: want one page, from event 9 (the first two pages kept)", got)
	}

	raw := rawClient(t, c)
	for i := range 9 { // sort after every event key: two pages and more of no events
		if _, err := raw.Put(ctx, fmt.Sprintf("/reconciler/rollouts/web/zz-by-hand-%d", i), "{}"); err != nil {
			t.Fatal(err)
		}
	}
	e := reconciler.Event{Type: reconciler.EventWaveDone, Rollout: "r1", Wave: 0}
	if err := w.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return &e, nil }); err != nil {
		t.Fatal(err)
	}
	evs, err = r.Record(ctx, "web")
	if err != nil || len(evs) != 11 || evs[10].Type != reconciler.EventWaveDone {
		t.Fatalf("read past keys written by hand = %d events, %v: want 11, the wave_done last", len(evs), err)
	}
	if got := reads(); len(got) != 3 {
		t.Fatalf("read past 9 keys written by hand in %d pages (%q): want 3", len(got), got)
	}
}
