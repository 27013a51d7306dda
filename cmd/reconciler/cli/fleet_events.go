package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/internal/notify"
	"github.com/fleetops/reconciler/reconciler"
)

// eventsPoll bounds how long `events --follow` goes without reading the
// records when the shared state's watch says nothing (Git over HTTP polls).
const eventsPoll = 2 * time.Second

func newEventsCmd(e *env) *cobra.Command {
	f := &repoFlags{}
	var followOn bool
	c := &cobra.Command{
		Use:   "events [APP]",
		Short: "Print the rollout events agents notify, as CloudEvents (--follow: as they happen)",
		Long: `events prints the events of the latest rollout of APP (or of every app) as the
agents' notifications carry them (docs/notifications.md): one line each for
people, or with --output json as CloudEvents, the same JSON, type, source
and id a --notify target receives: one array, or with --follow one event
per line (JSON Lines). With --follow it keeps printing new events as they
are recorded until interrupted. It reads
the shared state (the fleet repo's refs, or --shared etcd://...).`,
		Example: `  reconciler events web --follow
  reconciler events --follow --output json | jq .type`,
		Args:              rangeArgs(0, 1),
		ValidArgsFunction: completeApps(e, f),
		RunE: func(c *cobra.Command, args []string) error {
			h, err := f.openReader(c.Context(), e)
			if err != nil {
				return err
			}
			apps, err := eventApps(c.Context(), e, h, args)
			if err != nil {
				return err
			}
			return streamEvents(c.Context(), e, h, apps, followOn)
		},
	}
	f.register(c)
	c.Flags().BoolVarP(&followOn, "follow", "f", false, "keep printing events as they are recorded")
	return c
}

// eventApps is the app named, or every app of the fleet.
func eventApps(ctx context.Context, e *env, h *fleetHandles, args []string) ([]string, error) {
	v, err := h.view(ctx)
	if err != nil {
		return nil, err
	}
	v.warn(e)
	if len(args) == 1 {
		if _, err := appOf(v.fleet, args[0]); err != nil {
			return nil, err
		}
		return args, nil
	}
	return slices.Sorted(maps.Keys(v.fleet.Apps)), nil
}

// streamEvents prints each app's latest rollout's events, then, following,
// the new ones whenever the shared state moves. Not following, --output
// json prints one array (one JSON document, as every command); following,
// one CloudEvent per line.
func streamEvents(ctx context.Context, e *env, h *fleetHandles, apps []string, followOn bool) error {
	printed := map[string]int{} // app -> record events printed
	var all []notify.CloudEvent
	emit := func(ce notify.CloudEvent) error {
		if h.flags.output == "json" && !followOn {
			all = append(all, ce)
			return nil
		}
		return printEvent(e, h, ce)
	}
	for _, app := range apps {
		rec, err := h.shared.Record(ctx, app)
		if err != nil {
			return fmt.Errorf("read the rollout record of %s: %w", app, err)
		}
		if r := reconciler.Latest(rec); r != nil {
			printed[app] = r.Started
		}
		if err := newEvents(h, app, rec, printed, emit); err != nil {
			return err
		}
	}
	if !followOn {
		if h.flags.output == "json" {
			return writeJSON(e, append([]notify.CloudEvent{}, all...))
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := h.shared.Watch(ctx, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}); err != nil && ctx.Err() == nil {
			fmt.Fprintf(e.stderr, "warning: watching the shared state: %v; polling every %s\n", err, eventsPoll)
		}
	})
	tick := time.NewTicker(eventsPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
		for _, app := range apps {
			rec, err := h.shared.Record(ctx, app)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(e.stderr, "warning: read the rollout record of %s: %v; trying again\n", app, err)
				continue
			}
			if err := newEvents(h, app, rec, printed, emit); err != nil {
				return err
			}
		}
	}
}

// newEvents passes the CloudEvents of rec beyond those printed to emit.
func newEvents(h *fleetHandles, app string, rec []reconciler.Event, printed map[string]int, emit func(notify.CloudEvent) error) error {
	if len(rec) < printed[app] { // the record was replaced
		printed[app] = 0
	}
	for i := printed[app]; i < len(rec); i++ {
		for _, ce := range notify.FromRecord(h.url, app, rec, i) {
			if err := emit(ce); err != nil {
				return err
			}
		}
	}
	printed[app] = len(rec)
	return nil
}

// printEvent prints one event: a JSON line, or a line for people.
func printEvent(e *env, h *fleetHandles, ce notify.CloudEvent) error {
	if h.flags.output == "json" {
		b, err := json.Marshal(ce)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", ce.ID, err)
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "%s  %s\n", ce.Time.Local().Format(time.DateTime), notify.Text(ce))
	return err
}
