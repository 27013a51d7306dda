package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// Records reads an app's rollout record (the agent's shared state): Run
// resolves staged events against it.
type Records interface {
	Record(ctx context.Context, app string) ([]reconciler.Event, error)
}

// resolveEvery is how often Run looks again at staged events that could
// not be resolved (the shared state was unreachable).
const resolveEvery = time.Minute

// Run delivers the queues until ctx ends: one sender per target, and the
// resolution of staged events left by a crash or a failed append, now and
// every minute (a directory read when there are none).
func (o *Outbox) Run(ctx context.Context, records Records) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, t := range o.opt.Targets {
		wg.Go(func() { o.send(ctx, t) })
	}
	for {
		o.Resolve(ctx, records)
		if err := o.opt.Clock.Sleep(ctx, resolveEvery); err != nil {
			return
		}
	}
}

// Resolve settles each staged event: queued when its record event is in
// the app's record, discarded when not. It returns how many it could not
// settle (the record unreadable).
func (o *Outbox) Resolve(ctx context.Context, records Records) (left int) {
	des, err := os.ReadDir(o.stageDir())
	if err != nil {
		o.log.Error("read staged notifications", "err", err)
		return 1
	}
	for _, de := range des {
		tok, ok := trimJSON(de.Name())
		if !ok || o.isBusy(tok) {
			continue
		}
		s, err := readStaged(filepath.Join(o.stageDir(), de.Name()))
		if err != nil {
			o.log.Warn("unreadable staged notification discarded", "file", de.Name(), "err", err)
			if err := o.Discard(tok); err != nil {
				o.log.Error("unreadable staged notification", "file", de.Name(), "err", err)
			}
			continue
		}
		rec, err := records.Record(ctx, s.App)
		if err != nil {
			o.log.Warn("staged notification not resolved yet: rollout record unreadable", "app", s.App, "err", err)
			left++
			continue
		}
		if err := o.settle(tok, s, rec); err != nil {
			o.log.Error("staged notification", "app", s.App, "err", err)
			left++
		}
	}
	return left
}

func (o *Outbox) settle(tok string, s staged, rec []reconciler.Event) error {
	want, err := json.Marshal(s.Event)
	if err != nil {
		return err
	}
	for _, e := range rec {
		if b, err := json.Marshal(e); err == nil && string(b) == string(want) {
			o.log.Debug("staged notification queued: its event is in the record", "app", s.App, "type", s.Events[0].Short())
			return o.Commit(tok)
		}
	}
	return o.Discard(tok)
}

func trimJSON(name string) (string, bool) {
	if len(name) < 6 || name[0] == '.' || filepath.Ext(name) != ".json" {
		return "", false
	}
	return name[:len(name)-5], true
}

// send delivers t's queue, oldest first, until ctx ends.
func (o *Outbox) send(ctx context.Context, t Target) {
	dir, kick := o.queueDir(t), o.kick[key(t)]
	log := o.log.With("target", redactURL(t.URL))
	failures := 0
	for {
		names, err := entries(dir)
		if err != nil {
			log.Error("notification queue unreadable", "err", err)
		}
		if len(names) == 0 || err != nil {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				continue
			case <-o.opt.Clock.After(o.opt.MaxBackoff): // a queue changed behind our back
				continue
			}
		}
		if o.deliver(ctx, t, filepath.Join(dir, names[0]), log) {
			failures = 0
			continue
		}
		failures++
		if o.opt.Clock.Sleep(ctx, o.backoff(failures)) != nil {
			return
		}
	}
}

// deliver posts one queued event; true when it is done with (taken, or
// refused for good), false to retry it later.
func (o *Outbox) deliver(ctx context.Context, t Target, path string, log *slog.Logger) bool {
	body, err := os.ReadFile(path)
	if err != nil {
		log.Error("queued notification unreadable; dropped", "file", filepath.Base(path), "err", err)
		return o.remove(path, log)
	}
	status, err := o.post(ctx, t, body)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("notification not delivered; retrying", "err", err)
		}
		return false
	case status >= 200 && status < 300:
		log.Debug("notification delivered", "file", filepath.Base(path), "status", status)
		return o.remove(path, log)
	case refused(status):
		log.Error("notification refused by the target; dropped (fix the receiver: retrying cannot help)", "file", filepath.Base(path), "status", status)
		return o.remove(path, log)
	default:
		log.Warn("notification not delivered; retrying", "status", fmt.Sprintf("%d %s", status, http.StatusText(status)))
		return false
	}
}

// refused: the receiver says this request itself is wrong. Every other
// answer (5xx, 401/403/404 from a misconfigured URL or key, 429) is
// retried, so fixing the receiver or the secret delivers what waited.
func refused(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge ||
		status == http.StatusUnprocessableEntity
}

func (o *Outbox) remove(path string, log *slog.Logger) bool {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Error("delivered notification not removed from the queue; it will be sent again", "err", err)
		return false
	}
	return true
}

// backoff is the wait after n consecutive failures: 1s doubling up to
// MaxBackoff, drawn from [d/2, d) so that agents do not retry in step.
func (o *Outbox) backoff(n int) time.Duration {
	d := min(time.Second<<min(n-1, 20), o.opt.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}
