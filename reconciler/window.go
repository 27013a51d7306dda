package reconciler

import (
	"fmt"
	"slices"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// Maintenance windows and freezes (issue 16 §3): a node starts a switch
// only while its rollout's time gate is open, judged on its own clock in
// each window's timezone. Rollbacks ignore the gate.

// Gate is a rollout's time gate at one moment.
type Gate struct {
	Open bool
	// Since: when open, when the current open span began (the start of the
	// window, or the end of a freeze); nodeTimeout counts from no earlier.
	Since time.Time
	// Next: when closed, when it next opens; zero when not within a year.
	Next time.Time
	// Reason: when closed, why ("outside the maintenance windows",
	// "frozen until ...: holidays").
	Reason string
}

// gateHorizon bounds how far ahead GateAt looks for the next opening.
const gateHorizon = 366 * 24 * time.Hour

type span struct{ from, to time.Time }

// GateAt is the gate of a rollout's windows and freezes at now. No windows
// means any time; no freezes, never frozen.
func GateAt(ro spec.Rollout, now time.Time) Gate {
	if len(ro.Windows) == 0 && len(ro.Freeze) == 0 {
		return Gate{Open: true, Since: now.Add(-gateHorizon)}
	}
	hi := now.Add(8 * 24 * time.Hour)
	for _, f := range ro.Freeze {
		if f.To.After(hi) {
			hi = f.To.Add(8 * 24 * time.Hour)
		}
	}
	hi = minTime(hi, now.Add(gateHorizon))
	lo := now.Add(-8 * 24 * time.Hour)
	open := subtract(windowSpans(ro.Windows, lo, hi), ro.Freeze)
	g := Gate{}
	for _, s := range open {
		switch {
		case !now.Before(s.from) && now.Before(s.to):
			return Gate{Open: true, Since: s.from}
		case s.from.After(now):
			if g.Next.IsZero() {
				g.Next = s.from
			}
		}
	}
	g.Reason = "outside the maintenance windows"
	for _, f := range ro.Freeze {
		if !now.Before(f.From) && now.Before(f.To) {
			g.Reason = "frozen until " + f.To.Format(time.RFC3339)
			if f.Reason != "" {
				g.Reason += ": " + f.Reason
			}
			break
		}
	}
	return g
}

// windowSpans are the open spans of windows between lo and hi, sorted and
// merged; no windows is one span over all of it.
func windowSpans(ws []spec.Window, lo, hi time.Time) []span {
	if len(ws) == 0 {
		return []span{{lo, hi}}
	}
	var out []span
	for _, w := range ws {
		loc, err := time.LoadLocation(w.Timezone)
		start, okS := spec.ClockMinutes(w.Start)
		end, okE := spec.ClockMinutes(w.End)
		if err != nil || !okS || !okE {
			continue // validated specs never get here
		}
		first := lo.In(loc).AddDate(0, 0, -1)
		for d := time.Date(first.Year(), first.Month(), first.Day(), 0, 0, 0, 0, loc); d.Before(hi); d = d.AddDate(0, 0, 1) {
			if !slices.Contains(w.Days, spec.Days[d.Weekday()]) {
				continue
			}
			from := time.Date(d.Year(), d.Month(), d.Day(), 0, start, 0, 0, loc)
			endDay := d
			if end <= start {
				endDay = d.AddDate(0, 0, 1) // past midnight
			}
			to := time.Date(endDay.Year(), endDay.Month(), endDay.Day(), 0, end, 0, 0, loc)
			out = append(out, span{from, to})
		}
	}
	slices.SortFunc(out, func(a, b span) int { return a.from.Compare(b.from) })
	var merged []span
	for _, s := range out {
		if n := len(merged); n > 0 && !s.from.After(merged[n-1].to) {
			merged[n-1].to = maxTime(merged[n-1].to, s.to)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// subtract removes the freezes from the spans.
func subtract(spans []span, freezes []spec.Freeze) []span {
	for _, f := range freezes {
		var out []span
		for _, s := range spans {
			if !f.From.Before(s.to) || !f.To.After(s.from) {
				out = append(out, s)
				continue
			}
			if s.from.Before(f.From) {
				out = append(out, span{s.from, f.From})
			}
			if f.To.Before(s.to) {
				out = append(out, span{f.To, s.to})
			}
		}
		spans = out
	}
	return spans
}

// closedText says for people when a closed gate opens: "outside the
// maintenance windows; opens at 2026-12-07T09:00:00+01:00 (in 2h3m)".
func (g Gate) closedText(now time.Time) string {
	if g.Next.IsZero() {
		return g.Reason + "; no opening within a year"
	}
	return fmt.Sprintf("%s; opens at %s (in %s)", g.Reason, g.Next.Format(time.RFC3339), g.Next.Sub(now).Round(time.Second))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
