package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/dashboard"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
)

// BenchmarkUIFollows measures how long a lease taken in the shared state
// takes to reach an open page's event stream (a rollout's waves move by
// record events and leases: what etcd's watch pushes): a bare repository on
// this machine (fsnotify wakes the reader), the same over git http-backend
// (the poll, uiPoll), and an embedded etcd (its watch). One op is one lease,
// taken and seen (its release is not timed); ns/op is the latency.
//
//	go test ./cmd/reconciler/cli -run '^$' -bench BenchmarkUIFollows -benchtime 10x
func BenchmarkUIFollows(b *testing.B) {
	for _, over := range []string{"local", "http", "etcd"} {
		b.Run(over, func(b *testing.B) {
			repo := gittest.NewBare(b, map[string]string{"fleet.cue": uiBenchSpec})
			if over == "http" {
				repo = gittest.Serve(b, repo)
			}
			f := &repoFlags{repo: repo, branch: "main", output: "json"}
			if over == "etcd" {
				f.shared, f.prefix = embedded.New(b, 1).URL(), etcdstore.DefaultPrefix
			}
			events := uiStream(b, f)
			ctx := context.Background()
			e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
			sh, err := f.openShared(ctx, e, repo, nil, "n1", "", nil)
			if err != nil {
				b.Fatal(err)
			}
			var slowest time.Duration
			b.ResetTimer()
			for i := range b.N {
				holder := fmt.Sprintf("bench-%d", i)
				start := time.Now()
				l, err := sh.Acquire(ctx, "web", 0, holder, "r1", time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				seen := false
				for line := range events {
					if strings.Contains(line, `"holder":"`+holder+`"`) {
						seen = true
						break
					}
				}
				if !seen {
					b.Fatalf("the event stream ended before lease holder %s showed", holder)
				}
				slowest = max(slowest, time.Since(start))
				b.StopTimer()
				if err := sh.Release(ctx, l); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(slowest.Seconds(), "max-s")
		})
	}
}

// uiBenchSpec is a fleet of one app and one node.
const uiBenchSpec = `package fleet

nodes: n1: {}
apps: web: {
	version: "1.0.0"
	artifact: url: "file:///nonexistent/web-\(version).tar.gz"
	health: tcp: "127.0.0.1:1"
}
`

// uiStream serves the ui for the fleet of f and returns the lines of its event stream.
func uiStream(b *testing.B, f *repoFlags) <-chan string {
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	src := &uiSource{e: e, f: f, limit: 10}
	srv, err := dashboard.New(dashboard.Options{Source: src, Poll: uiPoll})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	hs.Start()
	b.Cleanup(func() { cancel(); hs.Close(); <-done })
	resp, err := http.Get(hs.URL + "/api/events")
	if err != nil {
		b.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() { // ends with the stream, or at cleanup
		defer resp.Body.Close()
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return lines
}
