package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/internal/dashboard"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/trust"
)

// uiPoll is how often ui reads the fleet besides the store's watch: a
// Git store over HTTP reaches the page within a second (the read itself
// takes a few ref listings; BenchmarkUIFollows).
const uiPoll = 500 * time.Millisecond

// uiOptions are the flags of `reconciler ui`.
type uiOptions struct {
	repoFlags
	listen, basePath string
	poll             time.Duration
	historyLimit     int
	print            string // --output: how the serving address is told
}

// uiServing is what `ui --output json` prints once it serves: with
// --listen 127.0.0.1:0 it is how a script learns the port.
type uiServing struct {
	URL      string `json:"url"`
	ReadOnly bool   `json:"readOnly"`
}

// uiCommands builds ui.
func uiCommands(e *env) []*cobra.Command {
	o := &uiOptions{}
	c := &cobra.Command{
		Use:   "ui --listen 127.0.0.1:8080 --repo URL [--shared ...]",
		Short: "Serve a read-only, live web view of the fleet",
		Long: `ui serves a web page that shows the fleet as status and history do, live:
the matrix of nodes and apps (running version, state, target; filter by
label), each node's report, errors and history, the rollout of each app
(waves, node states, lease holders, progress, the countdown to the next
wave or the end of the canary monitor, elapsed and estimated time, the
failure reason) and the history of upgrades and rollbacks.

The page is pushed every change (server-sent events) within about a second
of it: the shared state's watch (etcd pushes; a local Git repository is
watched on disk) and a read every --poll (500ms). It only reads:
every request but GET and HEAD is refused with 405. Behind a reverse proxy,
serve it under --base-path, or let the proxy strip the prefix and send it
as X-Forwarded-Prefix. See docs/ui.md.`,
		Example: `  reconciler ui --listen 127.0.0.1:8080 --repo https://git.example.com/fleet.git
  reconciler ui --repo /srv/fleet.git --shared etcd://10.0.0.5:2379 --base-path /fleet`,
		Args: rangeArgs(0, 0),
		RunE: func(c *cobra.Command, _ []string) error { return runUI(c.Context(), e, o) },
	}
	fl := c.Flags()
	fl.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve the page on (host:port)")
	fl.StringVar(&o.basePath, "base-path", "", "path prefix to serve under, e.g. /fleet, for a reverse proxy that passes it on (one that strips it sends X-Forwarded-Prefix instead)")
	fl.DurationVar(&o.poll, "poll", uiPoll, "how often to read the fleet repo and the shared state besides the store's watch (each read lists their refs)")
	fl.IntVar(&o.historyLimit, "history-limit", 50, "at most this many history entries on the page")
	fl.StringVar(&o.repo, "repo", "", "fleet repo URL: a path, file://, http(s)://, ssh:// (default: the current directory's repo, or its origin)")
	o.sharedFlags.register(fl)
	fl.StringVar(&o.branch, "tracked-branch", "main", "the branch agents track")
	fl.StringVar(&o.dir, "dir", "", "directory of the specs in the fleet repo (default: its root)")
	registerOutput(c, &o.print)
	return []*cobra.Command{c}
}

func runUI(ctx context.Context, e *env, o *uiOptions) error {
	if err := checkOutput(o.print); err != nil {
		return err
	}
	if o.poll <= 0 {
		return &usageError{fmt.Errorf("--poll %s: want a positive duration, e.g. 500ms", o.poll)}
	}
	o.output = "json" // the readers put their warnings in the results, for the page
	if _, _, err := o.gitURL(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src := &uiSource{e: &env{stdout: io.Discard, stderr: io.Discard, getenv: e.getenv, wd: e.wd}, f: &o.repoFlags, limit: o.historyLimit}
	srv, err := dashboard.New(dashboard.Options{Source: src, Repo: redact.String(o.repo), BasePath: o.basePath, Poll: o.poll, Logger: log})
	if err != nil {
		return &usageError{err}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	defer ln.Close() // Serve closes it too; this covers the returns before
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) }) // returns nil when ctx ends
	defer wg.Wait()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }} // event streams end with ctx
	shut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shut)
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		// Streams end with ctx; Shutdown waits for them and for other
		// requests in flight. Its error is only its deadline passing.
		_ = hs.Shutdown(sctx)
	})
	defer stop()
	serving := uiServing{URL: fmt.Sprintf("http://%s%s/", ln.Addr(), strings.TrimRight(o.basePath, "/")), ReadOnly: true}
	if o.print == "json" {
		if err := writeJSON(e, serving); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stderr, "reconciler ui: serving %s (read-only)\n", serving.URL)
	}
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	<-shut // Serve returns as Shutdown begins: wait for it to end
	return nil
}

// uiSource reads the fleet for the dashboard with the readers of status and
// history. Snapshot runs on the dashboard's one reader goroutine; Watch on
// another, so the handles are guarded.
type uiSource struct {
	e     *env // streams discarded: the readers' warnings are in their results
	f     *repoFlags
	limit int

	mu sync.Mutex
	h  *fleetHandles // nil until the fleet repo could be opened

	histKey string // tip and rollout records the history was computed at
	hist    []uiHistoryEntry
}

// uiHistoryEntry is a history entry with the key its commit's signature
// names ("" unsigned): shown, not verified (the agents' trust decides).
type uiHistoryEntry struct {
	historyEntry
	Signer string `json:"signer,omitempty"`
}

// handles opens the fleet repo and the shared state on first use, and
// again after a failure: a bad --repo is a banner on the page, fixed by
// the next read that works.
func (s *uiSource) handles(ctx context.Context) (*fleetHandles, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		return s.h, nil
	}
	h, err := openFleet(ctx, s.e, s.f, "reconciler-ui")
	if err != nil {
		return nil, fmt.Errorf("open the fleet repo %s: %w (check --repo and --shared)", orDash(s.f.repo), err)
	}
	h.specs = map[plumbing.Hash]loaded{}
	s.h = h
	return h, nil
}

func (s *uiSource) current() *fleetHandles {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}

// Watch follows the shared state's watch once the handles are open.
func (s *uiSource) Watch(ctx context.Context, wake func()) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if h := s.current(); h != nil {
			return h.shared.Watch(ctx, wake)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Snapshot reads the specs, the status of every app, the reports, the
// rollout records and the history.
func (s *uiSource) Snapshot(ctx context.Context) (*dashboard.Snapshot, error) {
	h, err := s.handles(ctx)
	if err != nil {
		return nil, err
	}
	v, err := h.view(ctx)
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(v.fleet.Apps))
	sts, reads, err := statusesIn(ctx, h, v, names)
	if err != nil {
		return nil, err
	}
	snap := &dashboard.Snapshot{Time: time.Now(), Repo: redact.String(h.url), Shared: h.shared.URL(), Branch: s.f.branch,
		Tip: v.tip.String(), Apps: []dashboard.App{}, Rollouts: sts}
	if snap.Rollouts == nil {
		snap.Rollouts = []reconciler.Status{}
	}
	for _, st := range sts {
		for _, w := range st.Warnings {
			if !slices.Contains(snap.Warnings, w) {
				snap.Warnings = append(snap.Warnings, w)
			}
		}
	}
	key := v.tip.String()
	for _, name := range names {
		app, _ := appOf(v.fleet, name)
		snap.Apps = append(snap.Apps, dashboard.App{Name: name, Target: app.Version, Strategy: app.Rollout.Strategy, Paused: app.Paused})
		key += fmt.Sprintf(" %s:%d", name, len(reads.records[name]))
	}
	snap.Nodes = uiNodes(v, reads.reports, reads.records)
	if snap.History, err = s.history(ctx, h, key); err != nil {
		return nil, err
	}
	return snap, nil
}

// history is the history command's entries with signers, recomputed only
// when the tip or a rollout record moved (walking commits loads specs).
func (s *uiSource) history(ctx context.Context, h *fleetHandles, key string) ([]uiHistoryEntry, error) {
	if key == s.histKey && s.hist != nil {
		return s.hist, nil
	}
	entries, err := history(ctx, h, "", s.limit, 500)
	if err != nil {
		return nil, err
	}
	out := make([]uiHistoryEntry, 0, len(entries))
	for _, en := range entries {
		ue := uiHistoryEntry{historyEntry: en}
		if c, err := h.desired.CommitObject(plumbing.NewHash(en.Commit)); err == nil {
			if ue.Signer, err = trust.SignatureKey(c); err != nil {
				ue.Signer = "unreadable signature: " + err.Error()
			}
		}
		out = append(out, ue)
	}
	s.histKey, s.hist = key, out
	return out, nil
}

// uiNodeEvents bounds each node's history on the page (records only grow).
const uiNodeEvents = 50

// uiNodes are the declared and reporting nodes with their reports and the
// record events that name them, newest first (the uiNodeEvents newest).
func uiNodes(v *fleetView, reports map[string]reconciler.NodeReport, records map[string][]reconciler.Event) []dashboard.Node {
	events := map[string][]dashboard.NodeEvent{}
	for app, rec := range records {
		for _, ev := range rec {
			if ev.Node != "" {
				events[ev.Node] = append(events[ev.Node], dashboard.NodeEvent{App: app, Event: ev})
			}
		}
	}
	out := []dashboard.Node{}
	for _, info := range reconciler.InventoryOf(v.fleet.Nodes, reports) {
		n := dashboard.Node{Name: info.Name, Labels: info.Labels, Events: events[info.Name]}
		if rep, ok := reports[info.Name]; ok {
			n.Report = &rep
		}
		if n.Events == nil {
			n.Events = []dashboard.NodeEvent{}
		}
		sort.SliceStable(n.Events, func(i, j int) bool { return n.Events[i].Time.After(n.Events[j].Time) })
		if len(n.Events) > uiNodeEvents {
			n.Events = n.Events[:uiNodeEvents]
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
