package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
)

//go:embed assets
var assets embed.FS

// Options configure a Server.
type Options struct {
	// Source reads the fleet (required).
	Source Source
	// Repo names the fleet repo on the page while it cannot be read yet.
	Repo string
	// BasePath is the path prefix the page is served under ("/fleet"),
	// for a reverse proxy that passes the prefix on. Default "": the root,
	// or the X-Forwarded-Prefix of a proxy that strips it.
	BasePath string
	// Poll is how often the Source is read besides its watch's wakes
	// (default 1s; `reconciler ui --poll`, 500ms by default).
	Poll time.Duration
	// Heartbeat is how often an idle event stream gets a comment, so
	// proxies keep it open (default 15s).
	Heartbeat time.Duration
	Clock     clock.Clock  // default the system clock
	Logger    *slog.Logger // default discards
}

// Validate fills defaults and checks BasePath.
func (o *Options) Validate() error {
	if o.Source == nil {
		return errors.New("dashboard: no Source")
	}
	o.BasePath = strings.TrimRight(o.BasePath, "/")
	if o.BasePath != "" && !validPrefix(o.BasePath) {
		return fmt.Errorf("--base-path %q: want a path such as /fleet (letters, digits, - _ . ~ and /)", o.BasePath)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// prefixRE is what a base path may be: absolute, no "//", no "..", nothing
// that needs escaping in a URL or an attribute.
var prefixRE = regexp.MustCompile(`^(/[A-Za-z0-9_.~-]+)+$`)

func validPrefix(p string) bool {
	return prefixRE.MatchString(p) && !strings.Contains(p, "/../") && !strings.HasSuffix(p, "/..")
}

// Server is the dashboard: a reader loop (Run) and its HTTP handler.
type Server struct {
	opt   Options
	index *template.Template
	files http.Handler

	mu      sync.Mutex
	last    []byte // the current snapshot's JSON
	good    *Snapshot
	lastErr string // the read error logged last: each is logged once
	subs    map[chan []byte]struct{}
}

// New builds a Server; call Run to start reading the fleet.
func New(opt Options) (*Server, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	idx, err := template.ParseFS(assets, "assets/index.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	s := &Server{opt: opt, index: idx, files: http.FileServerFS(sub), subs: map[chan []byte]struct{}{}}
	first := empty()
	first.Reading = true
	s.last, _ = json.Marshal(&first)
	return s, nil
}

// empty is a snapshot with no fleet in it, its lists empty (not null).
func empty() Snapshot {
	return Snapshot{Apps: []App{}, Nodes: []Node{}, Rollouts: []reconciler.Status{}, History: []any{}}
}

// Run reads the Source now, at every wake of its watch and every Poll,
// and pushes each change to the open pages, until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.opt.Source.Watch(ctx, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		if err != nil && ctx.Err() == nil {
			s.opt.Logger.Warn("dashboard: the store's watch stopped; polling only", "err", err)
		}
	})
	defer wg.Wait()
	tick := s.opt.Clock.NewTicker(s.opt.Poll)
	defer tick.Stop()
	for {
		s.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C():
		}
	}
}

// refresh reads a snapshot and publishes it when it changed. A failed read
// republishes the last good one with the error.
func (s *Server) refresh(ctx context.Context) {
	snap, err := s.opt.Source.Snapshot(ctx)
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if err.Error() != s.lastErr {
			s.opt.Logger.Warn("dashboard: read the fleet", "err", err)
			s.lastErr = err.Error()
		}
		keep := empty()
		if s.good != nil {
			keep = *s.good
		}
		keep.Time = s.opt.Clock.Now()
		if keep.Repo == "" {
			keep.Repo = s.opt.Repo
		}
		keep.Error = redact.String(err.Error()) // a URL in it may carry credentials
		snap = &keep
	} else {
		s.good, s.lastErr = snap, ""
	}
	b, err := json.Marshal(snap)
	if err != nil {
		s.opt.Logger.Error("dashboard: encode the snapshot", "err", err)
		return
	}
	if sameButTime(b, s.last) {
		return
	}
	s.last = b
	for ch := range s.subs {
		select { // latest wins: a slow page skips to the newest snapshot
		case <-ch:
		default:
		}
		ch <- b
	}
}

// sameButTime reports whether two snapshots differ only in their read time
// (the first field), so an idle fleet sends no events.
func sameButTime(a, b []byte) bool {
	cut := func(x []byte) []byte {
		if i := bytes.IndexByte(x, ','); i >= 0 {
			return x[i:]
		}
		return x
	}
	return bytes.Equal(cut(a), cut(b))
}

// subscribe registers a page for snapshots; it gets the current one first.
func (s *Server) subscribe() (chan []byte, func()) {
	ch := make(chan []byte, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[ch] = struct{}{}
	ch <- s.last
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, ch)
	}
}

func (s *Server) current() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
