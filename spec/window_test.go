package spec

import (
	"strings"
	"testing"
	"time"
)

// TestWindowsAndFreezeMistakes: every problem of rollout.windows and
// rollout.freeze is reported at the field at fault (issue 16 §3).
func TestWindowsAndFreezeMistakes(t *testing.T) {
	got := loadErrors(t, map[string]string{"f.cue": `package fleet

apps: x: {
	version: "1.0.0"
	artifact: url: "https://r/x.tgz"
	health: tcp: "h:1"
	rollout: windows: [
		{days: ["mon", "fri"], start: "09:00", end: "17:00", timezone: "Europe/Berlin"},
		{days: ["monday"], start: "9:00", end: "17:00"},
		{days: ["sat"], start: "22:00", end: "25:00", timezone: "Mars/Olympus"},
		{days: [], start: "10:00", end: "10:00"},
	]
	rollout: freeze: [
		{from: "2026-12-20T00:00:00Z", to: "2027-01-04T00:00:00+01:00", reason: "holidays"},
		{from: "2026-12-20", to: "2026-12-19T00:00:00Z"},
		{from: "2026-12-20T00:00:00Z", to: "2026-12-19T00:00:00Z"},
	]
}
`})
	want := []string{
		`f.cue:9:11: apps.x.rollout.windows[1].days[0]: got "monday", want a day: "mon", "tue", "wed", "thu", "fri", "sat" or "sun"`,
		`f.cue:9:29: apps.x.rollout.windows[1].start: got "9:00", want a time of day "HH:MM" from "00:00" to "23:59"`,
		`f.cue:10:40: apps.x.rollout.windows[2].end: got "25:00", want a time of day "HH:MM" from "00:00" to "24:00"`,
		`f.cue:10:59: apps.x.rollout.windows[2].timezone: got "Mars/Olympus", want an IANA time zone such as "Europe/Berlin" or "UTC"`,
		`f.cue:11:10: apps.x.rollout.windows[3].days: no days, so the window never opens: list them, such as ["mon", "tue"]`,
		`f.cue:11:35: apps.x.rollout.windows[3].end: got "10:00", the same as start: the window would be empty`,
		`f.cue:15:10: apps.x.rollout.freeze[1].from: got "2026-12-20", want an RFC 3339 time such as "2026-12-20T00:00:00+01:00"`,
		`f.cue:16:38: apps.x.rollout.freeze[2].to: got 2026-12-19T00:00:00Z, not after from (2026-12-20T00:00:00Z): the freeze would be empty`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWindowsLoad: a valid window takes timezone UTC when it names none;
// freezes are RFC 3339 times, offsets kept.
func TestWindowsLoad(t *testing.T) {
	f, err := LoadFiles(map[string][]byte{"f.cue": []byte(minimal + `apps: web: rollout: {
	windows: [{days: ["sat", "sun"], start: "22:00", end: "04:00"}]
	freeze: [{from: "2026-12-20T00:00:00+01:00", to: "2027-01-04T00:00:00Z", reason: "holidays"}]
}
`)})
	if err != nil {
		t.Fatal(err)
	}
	r := f.Apps["web"].Rollout
	if len(r.Windows) != 1 || r.Windows[0].Timezone != "UTC" || r.Windows[0].End != "04:00" {
		t.Fatalf("windows = %+v", r.Windows)
	}
	if len(r.Freeze) != 1 || !r.Freeze[0].From.Equal(time.Date(2026, 12, 19, 23, 0, 0, 0, time.UTC)) || r.Freeze[0].Reason != "holidays" {
		t.Fatalf("freeze = %+v", r.Freeze)
	}
}

// TestMaxFailures: a count or a share, each mistake at its position.
func TestMaxFailures(t *testing.T) {
	got := loadErrors(t, map[string]string{"f.cue": `package fleet

apps: [N=_]: {version: "1.0.0", artifact: url: "https://r/\(N).tgz", health: tcp: "h:1"}
apps: a: rollout: maxFailures: "150%"
apps: b: rollout: maxFailures: -1
apps: c: rollout: maxFailures: 1.5
`})
	want := `f.cue:4:32: apps.a.rollout.maxFailures: got "150%", want a number of nodes >= 0 such as 1, or a share of the plan's nodes such as "10%"
f.cue:5:32: apps.b.rollout.maxFailures: got -1, want a number of nodes >= 0 such as 1, or a share of the plan's nodes such as "10%"
f.cue:6:32: apps.c.rollout.maxFailures: got 1.5, want a number of nodes >= 0 such as 1, or a share of the plan's nodes such as "10%"`
	if strings.Join(got, "\n") != want {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	f, err := LoadFiles(map[string][]byte{"f.cue": []byte(minimal + `apps: web: rollout: maxFailures: "25%"` + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	if b := f.Apps["web"].Rollout.MaxFailures; b.String() != "25%" || b.Of(9) != 2 || b.Of(3) != 0 {
		t.Fatalf("budget = %+v: of 9 %d, of 3 %d", b, b.Of(9), b.Of(3))
	}
}

// TestApprove: the three gates, the default, and a mistake at its position.
func TestApprove(t *testing.T) {
	got := loadErrors(t, map[string]string{"f.cue": `package fleet

apps: [N=_]: {version: "1.0.0", artifact: url: "https://r/\(N).tgz", health: tcp: "h:1"}
apps: a: rollout: approve: "after_canary"
apps: b: rollout: approve: true
`})
	want := `f.cue:4:28: apps.a.rollout.approve: got "after_canary", want "none", "after-canary" or "each-wave"
f.cue:5:28: apps.b.rollout.approve: got true, want "none", "after-canary" or "each-wave"`
	if strings.Join(got, "\n") != want {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	for _, gate := range []string{ApproveNone, ApproveAfterCanary, ApproveEachWave} {
		f, err := LoadFiles(map[string][]byte{"f.cue": []byte(minimal + `apps: web: rollout: approve: "` + gate + `"` + "\n")})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Apps["web"].Rollout.Approve; got != gate {
			t.Errorf("approve = %q, want %q", got, gate)
		}
	}
}
