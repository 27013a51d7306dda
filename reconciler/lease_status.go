package reconciler

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Lease slot states, as `reconciler leases` and `status` show them.
const (
	LeaseFree = "free" // never used, released or broken
	LeaseHeld = "held"
	// LeaseExpired: held, and this observer has seen it unchanged for its
	// TTL; agents may take it over.
	LeaseExpired = "expired"
	// LeaseStale: held, and the holder's last renewal (by its own clock) is
	// older than its TTL by the observer's clock. Informational: agents never
	// decide expiry from other nodes' clocks.
	LeaseStale = "stale"
)

// LeaseStatus is one lease slot as an operator sees it.
type LeaseStatus struct {
	App     string `json:"app"`
	Slot    int    `json:"slot"`
	State   string `json:"state"`
	Holder  string `json:"holder,omitempty"`
	Rollout string `json:"rollout,omitempty"`
	// Acquired and Renewed are the holder's clock; zero (and absent from
	// JSON) for a free slot.
	Acquired time.Time     `json:"acquired,omitzero"`
	Renewed  time.Time     `json:"renewed,omitzero"`
	TTL      time.Duration `json:"-"` // JSON: "ttl": "20s", "ttlSeconds": 20
	Token    string        `json:"token"`
	// Unchanged is how long this observer has seen the slot unchanged.
	Unchanged time.Duration `json:"-"` // JSON: "unchanged", "unchangedSeconds"
}

// LeaseStatusOf describes l at now (the observer's wall clock).
func LeaseStatusOf(l Lease, now time.Time) LeaseStatus {
	s := LeaseStatus{App: l.App, Slot: l.Slot, State: LeaseFree, TTL: l.TTL, Token: l.Token, Unchanged: l.Unchanged}
	if !l.Held() {
		return s
	}
	s.Holder, s.Rollout, s.Acquired, s.Renewed, s.State = l.Holder, l.Rollout, l.Acquired, l.Renewed, LeaseHeld
	switch {
	case l.Expired():
		s.State = LeaseExpired
	case !l.Renewed.IsZero() && now.Sub(l.Renewed) > l.TTL:
		s.State = LeaseStale
	}
	return s
}

// LeaseStatuses describes every lease of ls at now.
func LeaseStatuses(ls []Lease, now time.Time) []LeaseStatus {
	out := make([]LeaseStatus, 0, len(ls))
	for _, l := range ls {
		out = append(out, LeaseStatusOf(l, now))
	}
	return out
}

// MarshalJSON writes the durations as Go duration strings with a number of
// seconds beside them ("ttl": "20s", "ttlSeconds": 20).
func (s LeaseStatus) MarshalJSON() ([]byte, error) {
	type plain LeaseStatus
	return withDurations(plain(s), durationField{"ttl", s.TTL}, durationField{"unchanged", s.Unchanged})
}

// durationField is a duration a JSON object carries by name.
type durationField struct {
	name string
	d    time.Duration
}

// withDurations marshals v, a struct, and adds each field after its own as
// "<name>": "20s" and "<name>Seconds": 20: the one way every JSON shape of
// reconciler writes a duration.
func withDurations(v any, fields ...durationField) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(b) < 2 || b[len(b)-1] != '}' {
		return b, err
	}
	b = b[:len(b)-1]
	for _, f := range fields {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%q:%q,%q:%s", f.name, DurationText(f.d), f.name+"Seconds",
			strconv.FormatFloat(Seconds(f.d), 'f', -1, 64))
	}
	return append(b, '}'), nil
}

// DurationText is d as a Go duration string rounded for people: to the
// millisecond ("3.214s", "196ms", "20s").
func DurationText(d time.Duration) string {
	if d > -time.Millisecond && d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// Seconds is d in seconds, to the millisecond, for JSON.
func Seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond).Milliseconds()) / 1000
}
