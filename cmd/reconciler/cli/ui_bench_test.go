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

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/dashboard"
	"github.com/fleetops/reconciler/reconciler"
)

// BenchmarkUIFollows measures how long a node report written to the shared
// state takes to reach an open page's event stream: a bare repository on
// this machine (fsnotify wakes the reader) and the same over git
// http-backend (the poll, uiPoll). One op is one report, written and
// seen; ns/op is the latency.
//
//	go test ./cmd/reconciler/cli -run '^$' -bench BenchmarkUIFollows -benchtime 10x
func BenchmarkUIFollows(b *testing.B) {
	for _, over := range []string{"local", "http"} {
		b.Run(over, func(b *testing.B) {
			repo := gittest.NewBare(b, map[string]string{"fleet.cue": "package fleet\n\nnodes: n1: {}\napps: {}\n"})
			if over == "http" {
				repo = gittest.Serve(b, repo)
			}
			events := uiStream(b, repo)
			ctx := context.Background()
			sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: repo, Identity: fleetrepo.Identity{Name: "n1"}})
			if err != nil {
				b.Fatal(err)
			}
			var slowest time.Duration
			b.ResetTimer()
			for i := range b.N {
				agent := fmt.Sprintf("bench-%d", i)
				start := time.Now()
				if err := sh.WriteReport(ctx, reconciler.NodeReport{Node: "n1", AgentVersion: agent, Time: time.Now()}); err != nil {
					b.Fatal(err)
				}
				seen := false
				for line := range events {
					if strings.Contains(line, `"agentVersion":"`+agent+`"`) {
						seen = true
						break
					}
				}
				if !seen {
					b.Fatalf("the event stream ended before report %s showed", agent)
				}
				slowest = max(slowest, time.Since(start))
			}
			b.ReportMetric(slowest.Seconds(), "max-s")
		})
	}
}

// uiStream serves the ui for repo and returns the lines of its event stream.
func uiStream(b *testing.B, repo string) <-chan string {
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	src := &uiSource{e: e, f: &repoFlags{repo: repo, branch: "main", output: "json"}, limit: 10}
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
