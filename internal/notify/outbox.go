package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetops/reconciler/agent/state"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// Formats of a target's POST body.
const (
	FormatCloudEvents = "cloudevents" // the CloudEvent, structured mode
	FormatSlack       = "slack"       // {"text": "..."} for a Slack-compatible incoming webhook
)

// Target is one receiver of the fleet's events.
type Target struct {
	URL    string
	Format string // FormatCloudEvents (default) or FormatSlack
}

// Options configures an Outbox. Zero values take the defaults in comments.
type Options struct {
	Dir     string   // the outbox directory, in the agent's state dir (required)
	Fleet   string   // the fleet repo URL: the events' source (see Source)
	Targets []Target // where events go; none: nothing is staged
	// Secret keys the SignatureHeader of every POST; nil: unsigned.
	Secret []byte
	// Client posts the events (default: a client with a 10s timeout).
	Client *http.Client
	// MaxBackoff caps the wait between tries of a failing target (default
	// 1m); the first retry waits about 1s, each next one twice as long.
	MaxBackoff time.Duration
	// MaxQueue bounds each target's queue; beyond it the oldest events are
	// dropped, with a warning (default 10,000).
	MaxQueue int
	Clock    clock.Clock  // default clock.System{}
	Logger   *slog.Logger // default: discard
}

// Outbox is the agent's durable queue of events to deliver: staged before
// their record event is appended, queued once it is, removed from a
// target's queue once that target took them.
type Outbox struct {
	opt  Options
	log  *slog.Logger
	mu   sync.Mutex
	seq  int64
	kick map[string]chan struct{} // target key -> wake its sender
	// busy: staged tokens whose append is in flight; Resolve leaves them
	// to the Recorder, which commits or discards them, or Releases them
	// to Resolve when the append's outcome is unknown.
	busy map[string]bool
}

// staged is a staging file: the record event and its CloudEvents.
type staged struct {
	App    string           `json:"app"`
	Event  reconciler.Event `json:"event"`
	Events []CloudEvent     `json:"events"`
}

// Open opens (creating) the outbox in opt.Dir.
func Open(opt Options) (*Outbox, error) {
	if opt.Dir == "" {
		return nil, errors.New("notify outbox: Dir is required")
	}
	for _, t := range opt.Targets {
		if t.Format != "" && t.Format != FormatCloudEvents && t.Format != FormatSlack {
			return nil, fmt.Errorf("notify target %s: format %q: want %s or %s", t.URL, t.Format, FormatCloudEvents, FormatSlack)
		}
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = time.Minute
	}
	if opt.MaxQueue <= 0 {
		opt.MaxQueue = 10_000
	}
	opt.Clock = clock.Or(opt.Clock)
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Outbox{opt: opt, log: opt.Logger, kick: map[string]chan struct{}{}, busy: map[string]bool{}, seq: opt.Clock.Now().UnixNano()}
	if err := os.MkdirAll(o.stageDir(), 0o700); err != nil {
		return nil, fmt.Errorf("notify outbox: %w", err)
	}
	for _, t := range opt.Targets {
		dir := o.queueDir(t)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("notify outbox: %w", err)
		}
		names, err := entries(dir)
		if err != nil {
			return nil, err
		}
		if n := len(names); n > 0 {
			o.seq = max(o.seq, seqOf(names[n-1]))
		}
		o.kick[key(t)] = make(chan struct{}, 1)
	}
	return o, nil
}

func (o *Outbox) stageDir() string { return filepath.Join(o.opt.Dir, "staged") }

func (o *Outbox) queueDir(t Target) string { return filepath.Join(o.opt.Dir, "queue", key(t)) }

// key names a target's queue: a digest of its format and URL (the URL may
// hold a token, as Slack's do: it stays out of file names).
func key(t Target) string {
	h := sha256.Sum256([]byte(t.Format + " " + t.URL))
	return hex.EncodeToString(h[:8])
}

// Stage writes the CloudEvents of ev, about to be appended to the app's
// record after record, into the staging area. It returns the token to
// Commit or Discard, "" when ev has no CloudEvent or there is no target.
func (o *Outbox) Stage(app string, record []reconciler.Event, ev reconciler.Event) (string, error) {
	if len(o.opt.Targets) == 0 {
		return "", nil
	}
	all := append(slices.Clip(record), ev)
	ces := FromRecord(o.opt.Fleet, app, all, len(record))
	if len(ces) == 0 {
		return "", nil
	}
	b, err := json.Marshal(staged{App: app, Event: ev, Events: ces})
	if err != nil {
		return "", fmt.Errorf("stage notification %s: %w", ces[0].Type, err)
	}
	tok := ces[0].ID
	o.hold(tok, true)
	if err := state.WriteFile(filepath.Join(o.stageDir(), tok+".json"), b); err != nil {
		return "", fmt.Errorf("stage notification %s of %s: %w", ces[0].Short(), app, err)
	}
	return tok, nil
}

// Discard forgets a staged event that was not appended.
func (o *Outbox) Discard(tok string) error {
	defer o.hold(tok, false)
	err := os.Remove(filepath.Join(o.stageDir(), tok+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("discard staged notification: %w", err)
	}
	return nil
}

// Commit queues a staged event for every target: its record event is in
// the record.
func (o *Outbox) Commit(tok string) error {
	defer o.hold(tok, false)
	path := filepath.Join(o.stageDir(), tok+".json")
	s, err := readStaged(path)
	if err != nil {
		return err
	}
	if err := o.enqueue(s.Events); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove staged notification: %w", err)
	}
	return nil
}

// Release hands a staged token whose append failed (appended or not,
// nobody knows) to Resolve.
func (o *Outbox) Release(tok string) { o.hold(tok, false) }

func (o *Outbox) hold(tok string, busy bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if busy {
		o.busy[tok] = true
	} else {
		delete(o.busy, tok)
	}
}

func (o *Outbox) isBusy(tok string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.busy[tok]
}

func readStaged(path string) (staged, error) {
	var s staged
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		return s, fmt.Errorf("read staged notification: %w", err)
	}
	return s, nil
}

// enqueue appends events to every target's queue, then wakes the senders.
func (o *Outbox) enqueue(events []CloudEvent) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.opt.Targets {
		for _, e := range events {
			b, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("queue notification %s: %w", e.Type, err)
			}
			o.seq++
			name := fmt.Sprintf("%020d-%s.json", o.seq, e.ID)
			if err := state.WriteFile(filepath.Join(o.queueDir(t), name), b); err != nil {
				return fmt.Errorf("queue notification %s for %s: %w", e.Short(), redactURL(t.URL), err)
			}
		}
		o.trim(t)
		select {
		case o.kick[key(t)] <- struct{}{}:
		default:
		}
	}
	return nil
}

// trim drops the oldest entries of a target's queue beyond MaxQueue.
func (o *Outbox) trim(t Target) {
	names, err := entries(o.queueDir(t))
	if err != nil || len(names) <= o.opt.MaxQueue {
		return
	}
	drop := names[:len(names)-o.opt.MaxQueue]
	o.log.Warn("notification queue full: oldest events dropped", "target", redactURL(t.URL), "dropped", len(drop), "max", o.opt.MaxQueue)
	for _, n := range drop {
		if err := os.Remove(filepath.Join(o.queueDir(t), n)); err != nil {
			o.log.Warn("drop notification", "target", redactURL(t.URL), "err", err)
		}
	}
}

// Pending returns how many events wait in each target's queue, by URL.
func (o *Outbox) Pending() map[string]int {
	out := map[string]int{}
	for _, t := range o.opt.Targets {
		names, _ := entries(o.queueDir(t)) // unreadable: counted as 0, logged by the sender
		out[t.URL] = len(names)
	}
	return out
}

// entries lists a queue's files, oldest first.
func entries(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read notification queue: %w", err)
	}
	var names []string
	for _, de := range des {
		if n := de.Name(); strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	slices.Sort(names) // fixed-width sequence numbers: oldest first
	return names, nil
}

func seqOf(name string) int64 {
	n, _ := strconv.ParseInt(strings.SplitN(name, "-", 2)[0], 10, 64) // not ours: 0
	return n
}

// redactURL keeps a target's scheme and host: incoming-webhook URLs are
// credentials.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "(target)"
	}
	host, _, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = host[at+1:]
	}
	return scheme + "://" + host + "/…"
}

// post sends one queued event body to t.
func (o *Outbox) post(ctx context.Context, t Target, body []byte) (status int, err error) {
	ctype := ContentType
	if t.Format == FormatSlack {
		var e CloudEvent
		if err := json.Unmarshal(body, &e); err != nil {
			return 0, fmt.Errorf("read queued notification: %w", err)
		}
		if body, err = json.Marshal(map[string]string{"text": slackText(e)}); err != nil {
			return 0, err
		}
		ctype = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("notification to %s: %w", redactURL(t.URL), err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "reconciler-agent")
	if o.opt.Secret != nil {
		req.Header.Set(SignatureHeader, Sign(o.opt.Secret, body))
	}
	resp, err := o.opt.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("notification to %s: %w", redactURL(t.URL), err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

// slackText is a message for a chat channel: a mark, the line of Text.
func slackText(e CloudEvent) string {
	mark := ":information_source:"
	switch e.Short() {
	case Completed, NodeUpgraded, WaveDone, WaveApproved:
		mark = ":white_check_mark:"
	case Failed, NodeFailed, HealthFailed:
		mark = ":x:"
	case RollbackStarted, RollbackCommitted:
		mark = ":rewind:"
	}
	return mark + " " + Text(e)
}
