package process

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/fleetops/reconciler/agent/driver"
)

// record is driver.Running.Data for this driver: what a restarted agent
// needs to adopt, finish or undo.
type record struct {
	Current   *procRecord  `json:"current,omitempty"`
	Candidate *procRecord  `json:"candidate,omitempty"`
	Draining  []procRecord `json:"draining,omitempty"`
	// Starting is a start under way: its instance token and release,
	// recorded before the process is forked and replaced by Candidate (or
	// Current) once its pid is known. An agent killed in between leaves a
	// process no pid names; the token finds it (Adopt stops it).
	Starting *procRecord `json:"starting,omitempty"`
}

// procRecord identifies one process and how to start it again.
type procRecord struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // /proc/<pid>/stat field 22
	// Instance is the token in the environment of everything it forks
	// (RECONCILER_INSTANCE): what is left of it after it exits, even
	// outside its session, is found by it (procRecord.members).
	Instance string         `json:"instance,omitempty"`
	Release  driver.Release `json:"release"`
	// Sockets are the bound addresses of fds 3.., in order.
	Sockets []string `json:"sockets,omitempty"`
}

func decodeRecord(r driver.Running) (record, error) {
	var rec record
	if len(r.Data) == 0 {
		return rec, nil
	}
	if err := json.Unmarshal(r.Data, &rec); err != nil {
		return rec, fmt.Errorf("process record of %s %s: %w", r.App, r.Version, err)
	}
	return rec, nil
}

// running renders a record as the driver.Running the agent persists.
func (rec record) running(app string) driver.Running {
	r := driver.Running{App: app}
	if rec.Current == nil && rec.Candidate == nil && len(rec.Draining) == 0 && rec.Starting == nil {
		return r // nothing runs or starts: no record
	}
	if rec.Current != nil {
		r.Version, r.Dir = rec.Current.Release.Version, rec.Current.Release.Dir
		r.PIDs = append(r.PIDs, rec.Current.PID)
	}
	if rec.Candidate != nil {
		r.PIDs = append(r.PIDs, rec.Candidate.PID)
	}
	for _, p := range rec.Draining {
		r.PIDs = append(r.PIDs, p.PID)
	}
	r.Data, _ = json.Marshal(rec) // plain data: cannot fail
	return r
}

// alive reports whether the recorded process still runs (same pid, same
// start time, not a zombie).
func (p *procRecord) alive() bool {
	if p == nil {
		return false
	}
	st, state, err := procStat(p.PID)
	return err == nil && st == p.StartTime && state != "Z"
}

// procStat reads the start time (clock ticks since boot) and state of pid.
func procStat(pid int) (uint64, string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, "", fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64) // field 22 overall
	return start, f[0], err
}
