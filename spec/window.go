package spec

import (
	"fmt"
	"slices"
	"time"
	_ "time/tzdata" // a node without /usr/share/zoneinfo still judges a window's timezone

	"cuelang.org/go/cue"
)

// Days are the names a window's days are written in, Sunday first as in
// time.Weekday.
var Days = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ClockMinutes parses "HH:MM" (00:00 to 24:00) as minutes after midnight.
func ClockMinutes(s string) (int, bool) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, false
	}
	return h*60 + m, true
}

// windowProblems says what is wrong with a window, field by field.
func windowProblems(w Window) (out [][2]string) {
	if len(w.Days) == 0 {
		out = append(out, [2]string{"days", "no days, so the window never opens: list them, such as [\"mon\", \"tue\"]"})
	}
	start, okStart := ClockMinutes(w.Start)
	if !okStart || start == 24*60 {
		okStart = false
		out = append(out, [2]string{"start", fmt.Sprintf("got %q, want a time of day \"HH:MM\" from \"00:00\" to \"23:59\"", w.Start)})
	}
	end, okEnd := ClockMinutes(w.End)
	switch {
	case !okEnd:
		out = append(out, [2]string{"end", fmt.Sprintf("got %q, want a time of day \"HH:MM\" from \"00:00\" to \"24:00\"", w.End)})
	case okStart && end == start:
		out = append(out, [2]string{"end", fmt.Sprintf("got %q, the same as start: the window would be empty", w.End)})
	}
	if _, err := time.LoadLocation(w.Timezone); err != nil || w.Timezone == "" || w.Timezone == "Local" {
		out = append(out, [2]string{"timezone", fmt.Sprintf("got %q, want an IANA time zone such as \"Europe/Berlin\" or \"UTC\"", w.Timezone)})
	}
	return out
}

// checkWindows checks each window of the list v, at the field at fault.
func (c *checker) checkWindows(v cue.Value) {
	it, err := v.List()
	if err != nil {
		return
	}
	for it.Next() {
		var w Window
		if it.Value().Decode(&w) != nil {
			continue // the schema reports what does not decode
		}
		if w.Timezone == "" {
			w.Timezone = "UTC"
		}
		c.checkDays(it.Value())
		for _, fp := range windowProblems(w) {
			p := it.Value().Path()
			if at := it.Value().LookupPath(cue.ParsePath(fp[0])); at.Exists() {
				p = at.Path()
			}
			c.errs.add(c.valuePos(p), "%s: %s", p, fp[1])
		}
	}
}

// checkDays records each day of window w that is not one of Days.
func (c *checker) checkDays(w cue.Value) {
	it, err := w.LookupPath(cue.ParsePath("days")).List()
	if err != nil {
		return
	}
	for it.Next() {
		if d, err := it.Value().String(); err == nil && !slices.Contains(Days, d) {
			c.errs.add(c.valuePos(it.Value().Path()), "%s: got %q, want a day: \"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\" or \"sun\"", it.Value().Path(), d)
		}
	}
}

// checkFreeze checks each freeze: RFC 3339 times, from before to.
func (c *checker) checkFreeze(v cue.Value) {
	it, err := v.List()
	if err != nil {
		return
	}
	for it.Next() {
		var times [2]time.Time
		bad := false
		for i, f := range []string{"from", "to"} {
			at := it.Value().LookupPath(cue.ParsePath(f))
			s, err := at.String()
			if err != nil {
				bad = true
				continue
			}
			if times[i], err = time.Parse(time.RFC3339, s); err != nil {
				c.errs.add(c.valuePos(at.Path()), "%s: got %q, want an RFC 3339 time such as \"2026-12-20T00:00:00+01:00\"", at.Path(), s)
				bad = true
			}
		}
		if !bad && !times[0].Before(times[1]) {
			at := it.Value().LookupPath(cue.ParsePath("to"))
			c.errs.add(c.valuePos(at.Path()), "%s: got %s, not after from (%s): the freeze would be empty",
				at.Path(), times[1].Format(time.RFC3339), times[0].Format(time.RFC3339))
		}
	}
}
