package notify

import (
	"context"
	"log/slog"

	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// Decide is a rollout record append's decision (see rollout.Shared.Append).
type Decide = func([]reconciler.Event) (*reconciler.Event, error)

// Appender appends to rollout records by compare-and-swap: the shared
// state (fleetrepo.Shared, etcdstore.Store).
type Appender interface {
	Append(ctx context.Context, app string, decide Decide) error
}

// GuardedAppender appends under a precondition over lease slots
// (rollout.Shared.AppendGuarded).
type GuardedAppender interface {
	AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide Decide) error
}

// Recorder stages the notifications of every event this agent appends,
// and queues them once the append succeeded.
type Recorder struct {
	Outbox *Outbox
	Clock  clock.Clock  // stamps events before staging (default clock.System{})
	Logger *slog.Logger // default: discard
}

// Append is store.Append with the appended event's notifications queued.
// The event is stamped (Time) before it is staged, so that the staged copy
// is the one the record will hold; the stores keep a set Time. A failure
// to stage is logged and does not fail the append: the rollout matters
// more than its notification.
func (r *Recorder) Append(ctx context.Context, store Appender, app string, decide Decide) error {
	return r.record(ctx, app, decide, func(d Decide) error { return store.Append(ctx, app, d) })
}

// AppendGuarded is store.AppendGuarded with the appended event's
// notifications queued, as Append.
func (r *Recorder) AppendGuarded(ctx context.Context, store GuardedAppender, app string, guard []reconciler.Lease, decide Decide) error {
	return r.record(ctx, app, decide, func(d Decide) error { return store.AppendGuarded(ctx, app, guard, d) })
}

// record runs one append (appendFn with a staging decide) and commits the
// notification of the event that landed.
func (r *Recorder) record(ctx context.Context, app string, decide Decide, appendFn func(Decide) error) error {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := clock.Or(r.Clock)
	var last string
	tried := map[string]bool{}
	err := appendFn(func(cur []reconciler.Event) (*reconciler.Event, error) {
		ev, err := decide(cur)
		last = ""
		if err != nil || ev == nil {
			return ev, err
		}
		if ev.Time.IsZero() {
			ev.Time = c.Now()
		}
		tok, serr := r.Outbox.Stage(app, cur, *ev)
		if serr != nil {
			log.Error("notification not staged; it will not be sent", "app", app, "event", ev.Type, "err", serr)
		}
		if tok != "" {
			last, tried[tok] = tok, true
		}
		return ev, nil
	})
	if err != nil {
		// Appended or not, nobody knows yet: Outbox.Run resolves the staged
		// events against the record.
		return err
	}
	for tok := range tried {
		var serr error
		if tok == last {
			serr = r.Outbox.Commit(tok)
		} else {
			serr = r.Outbox.Discard(tok) // lost a race; decided again
		}
		if serr != nil {
			log.Error("staged notification left for the next resolution", "app", app, "err", serr)
		}
	}
	return nil
}
