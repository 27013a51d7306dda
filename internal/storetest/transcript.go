package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/reconciler"
)

// Transcript runs one script of lease, record and report operations by two
// handles with their own clocks and writes down every answer, with tokens
// named by order of appearance, so two stores can be compared.
func Transcript(t *testing.T, open Opener) []string {
	ctx := context.Background()
	ca, cb := clock.NewFake(time.Time{}), clock.NewFake(time.Time{})
	a, b := open("a", ca), open("b", cb)
	var out []string
	names := map[string]string{}
	tok := func(s string) string {
		if s == "" {
			return "-"
		}
		if names[s] == "" {
			names[s] = fmt.Sprintf("T%d", len(names)+1)
		}
		return names[s]
	}
	class := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, fleetrepo.ErrLeaseHeld):
			return "held"
		case errors.Is(err, fleetrepo.ErrLeaseLost):
			return "lost"
		case errors.Is(err, fleetrepo.ErrConflict):
			return "conflict"
		case errors.Is(err, errDecide):
			return "decide-error"
		}
		return "error"
	}
	lease := func(l reconciler.Lease) string {
		return fmt.Sprintf("%s/%d holder=%s rollout=%s ttl=%s token=%s unchanged=%s", l.App, l.Slot, l.Holder, l.Rollout, l.TTL, tok(l.Token), l.Unchanged)
	}
	note := func(step string, l reconciler.Lease, err error) {
		out = append(out, fmt.Sprintf("%s: %s %s", step, class(err), lease(l)))
	}
	leases := func(step string, h Store) {
		ls, err := h.Leases(ctx, "web")
		var parts []string
		for _, l := range ls {
			parts = append(parts, lease(l))
		}
		out = append(out, fmt.Sprintf("%s: %s [%s]", step, class(err), strings.Join(parts, "; ")))
	}
	const ttl = 30 * time.Second

	l1, err := a.Acquire(ctx, "web", 0, "a", "r1", ttl)
	note("a acquires web/0", l1, err)
	leases("b lists", b)
	l, err := b.Acquire(ctx, "web", 0, "b", "r1", ttl)
	note("b acquires a's fresh lease", l, err)
	cb.Advance(ttl - time.Second)
	l, err = b.Acquire(ctx, "web", 0, "b", "r1", ttl)
	note("b acquires 29s later", l, err)
	l2, err := a.Renew(ctx, l1)
	note("a renews", l2, err)
	out = append(out, fmt.Sprintf("a's validity: %s", a.Validity(l2)))
	ca.Advance(10 * time.Second)
	out = append(out, fmt.Sprintf("a's validity 10s later: %s; b's view: %s", a.Validity(l2), b.Validity(l2)))
	cb.Advance(2 * time.Second)
	leases("b lists after the renewal", b)
	cb.Advance(ttl)
	leases("b lists a TTL later", b)
	lb, err := b.Acquire(ctx, "web", 0, "b", "r1", ttl)
	note("b takes over", lb, err)
	l, err = a.Renew(ctx, l2)
	note("a renews after the takeover", l, err)
	l, err = a.Acquire(ctx, "web", 0, "a", "r2", ttl)
	note("a acquires b's fresh lease", l, err)
	l, err = b.Acquire(ctx, "web", 0, "b", "r2", ttl)
	note("b acquires its own lease again", l, err)
	out = append(out, fmt.Sprintf("b's validity of the old token: %s", b.Validity(lb)))
	la, err := a.Acquire(ctx, "web", 1, "a", "r2", ttl)
	note("a acquires web/1", la, err)
	err = a.Release(ctx, la)
	note("a releases web/1", la, err)
	// (At the same instant git would make the very same commit again and
	// find it landed: the same release twice is idempotent. A second later
	// it is a lost compare-and-swap.)
	ca.Advance(time.Second)
	err = a.Release(ctx, la)
	note("a releases web/1 again", la, err)
	leases("a lists", a)
	l, err = b.Acquire(ctx, "web", 1, "b", "r2", ttl)
	note("b acquires the released web/1", l, err)

	started := &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r2", By: "a", Target: "1.1.0", Time: ca.Now()}
	err = a.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
		out = append(out, fmt.Sprintf("a's decide sees %d events", len(cur)))
		return started, nil
	})
	out = append(out, "a appends started: "+class(err))
	err = b.Append(ctx, "web", func(cur []reconciler.Event) (*reconciler.Event, error) {
		out = append(out, fmt.Sprintf("b's decide sees %d events, the last %s", len(cur), cur[len(cur)-1].Type))
		return nil, nil
	})
	out = append(out, "b appends nothing: "+class(err))
	err = b.Append(ctx, "web", func([]reconciler.Event) (*reconciler.Event, error) { return nil, errDecide })
	out = append(out, "b's decide fails: "+class(err))
	rec, err := b.Record(ctx, "web")
	var types []string
	for _, e := range rec {
		types = append(types, e.Type+" "+e.Target)
	}
	out = append(out, fmt.Sprintf("b reads the record: %s %v", class(err), types))
	rec, err = a.Record(ctx, "db")
	out = append(out, fmt.Sprintf("a reads a record never written: %s %d", class(err), len(rec)))

	err = a.WriteReport(ctx, reconciler.NodeReport{Node: "a", Time: ca.Now(), Apps: map[string]reconciler.AppReport{"web": {Version: "1.0.0", State: reconciler.AppHealthy}}})
	out = append(out, "a reports: "+class(err))
	reps, err := b.Reports(ctx)
	out = append(out, fmt.Sprintf("b reads reports: %s %v %s", class(err), slices.Sorted(maps.Keys(reps)), reps["a"].Apps["web"].Version))
	hist, err := b.LeaseHistory(ctx, "web", 0, 0)
	var hs []string
	for _, h := range hist {
		hs = append(hs, h.Holder+"@"+tok(h.Token))
	}
	out = append(out, fmt.Sprintf("history of web/0: %s %v", class(err), hs))
	return out
}

var errDecide = errors.New("decide failed")
