package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// TypePrefix starts every CloudEvent type this package makes.
const TypePrefix = "dev.reconciler.rollout."

// CloudEvent types, after TypePrefix (docs/notifications.md).
const (
	Started           = "started"            // a rollout began: its plan is frozen
	WaveStarted       = "wave.started"       // a wave opened (the first with started, the next when one is done)
	WaveDone          = "wave.done"          // every node of a wave has a verdict
	WaveApproved      = "wave.approved"      // a person's approval commit lets the gated waves up to this one open
	NodeUpgraded      = "node.upgraded"      // a node runs the target, healthy
	NodeFailed        = "node.failed"        // a node failed its install, switch or health check
	HealthFailed      = "health.failed"      // that failure was a health check's (sent besides node.failed)
	RollbackStarted   = "rollback.started"   // the fleet moves back: a rollback commit's rollout, or an agent's rollback commit
	RollbackCommitted = "rollback.committed" // an agent wrote the rollback commit of a failed rollout
	Completed         = "completed"          // the rollout ended: every node upgraded, skipped or failed without rollback
	Failed            = "failed"             // the rollout failed (a rollback may follow)
)

// SpecVersion is the CloudEvents version of every event.
const SpecVersion = "1.0"

// ContentType is the structured-mode media type of a CloudEvent POST.
const ContentType = "application/cloudevents+json"

// CloudEvent is one event in CloudEvents 1.0 structured JSON. Node and
// Rollout are extension attributes (lowercase names, as the spec wants).
type CloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Node            string    `json:"reconcilernode"`
	Rollout         string    `json:"reconcilerrollout"`
	Data            Data      `json:"data"`
}

// Data is an event's payload: what happened to which app, node and wave.
// Wave is counted from 1, as people count (omitted when not about a wave).
type Data struct {
	App            string             `json:"app"`
	Rollout        string             `json:"rollout"`
	Target         string             `json:"target,omitempty"`
	From           string             `json:"from,omitempty"`
	Wave           int                `json:"wave,omitempty"`
	Waves          int                `json:"waves,omitempty"`
	Node           string             `json:"node,omitempty"`
	Reason         string             `json:"reason,omitempty"`
	RollbackCommit string             `json:"rollbackCommit,omitempty"`
	Commit         string             `json:"commit,omitempty"` // wave.approved: the approval commit
	Result         *reconciler.Result `json:"result,omitempty"`
	By             string             `json:"by"`
}

// Short is the event's type without TypePrefix ("wave.done").
func (e CloudEvent) Short() string { return strings.TrimPrefix(e.Type, TypePrefix) }

// Source is the CloudEvent source of the events node records in the fleet
// whose repo is fleet: "<fleet>#<node>", the fleet named by its repo URL
// without credentials, so a receiver of several fleets tells them apart.
func Source(fleet, node string) string { return stripUserinfo(fleet) + "#" + node }

// FromRecord returns the CloudEvents of record[i], the app's rollout record
// event at index i (the events before it give the plan's size). Events
// that have none (paused, resumed, options_changed, node_unreachable,
// superseded) return nil. fleet is the fleet repo's URL (see Source).
func FromRecord(fleet, app string, record []reconciler.Event, i int) []CloudEvent {
	e := record[i]
	r := reconciler.Latest(record[:i+1])
	waves := 0
	if r != nil && r.ID == e.Rollout && !r.AtOnce {
		waves = len(r.Waves)
	}
	base := Data{App: app, Rollout: e.Rollout, Target: e.Target, From: e.From, Node: e.Node,
		Reason: e.Reason, RollbackCommit: e.RollbackCommit, Result: e.Result, By: e.By, Waves: waves}
	if r != nil && r.ID == e.Rollout && base.Target == "" {
		base.Target, base.From = r.Target, r.From
	}
	var out []CloudEvent
	add := func(typ string, d Data) { out = append(out, newEvent(fleet, app, typ, e, d)) }
	wave := func(k int) Data { d := base; d.Wave = reconciler.WaveNumber(k); return d }
	switch e.Type {
	case reconciler.EventStarted:
		if e.Rollback {
			add(RollbackStarted, base)
		} else {
			add(Started, base)
		}
		if waves > 0 {
			add(WaveStarted, wave(0))
		}
	case reconciler.EventWaveDone:
		add(WaveDone, wave(e.Wave))
		if e.Wave+1 < waves {
			add(WaveStarted, wave(e.Wave+1))
		}
	case reconciler.EventApproved:
		d := wave(e.Wave)
		d.Commit = e.Commit
		add(WaveApproved, d)
	case reconciler.EventNodeDone:
		add(NodeUpgraded, base)
	case reconciler.EventNodeFailed:
		add(NodeFailed, base)
		if isHealth(e.Reason) {
			add(HealthFailed, base)
		}
	case reconciler.EventCompleted:
		add(Completed, base)
	case reconciler.EventFailed:
		add(Failed, base)
	case reconciler.EventRolledBack:
		d := base
		d.Target = e.Target // the version restored
		if r != nil {
			d.From = r.Target // the version that failed
		}
		// An automatic rollback starts with its commit: the fleet converges
		// to it at once, and no started event follows (the engine's
		// "back to From" path), so both are announced here.
		add(RollbackStarted, d)
		add(RollbackCommitted, d)
	}
	return out
}

// isHealth tells a health check's failure from an install's or a switch's
// by the reason the agent recorded: the health package's errors all start
// with "health " and the canary monitor's say "health check"; a workload
// that exits before it is healthy is "not healthy" or "before it was
// healthy".
func isHealth(reason string) bool {
	return strings.Contains(reason, "health ") || strings.Contains(reason, "healthy")
}

// newEvent builds one CloudEvent. Its id is a digest of the app, the type
// and the record event's JSON: the same for every reader of the record
// (the agent that sends it, `reconciler events`), and different for any
// two record events (each carries its writer and its time).
func newEvent(fleet, app, typ string, e reconciler.Event, d Data) CloudEvent {
	b, err := json.Marshal(e)
	if err != nil { // an Event is plain data
		panic(fmt.Sprintf("notify: marshal record event: %v", err))
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", app, typ)
	h.Write(b)
	return CloudEvent{
		SpecVersion: SpecVersion, ID: hex.EncodeToString(h.Sum(nil))[:32],
		Source: Source(fleet, e.By), Type: TypePrefix + typ, Subject: app,
		Time: e.Time.UTC(), DataContentType: "application/json",
		Node: e.By, Rollout: e.Rollout, Data: d,
	}
}

// stripUserinfo removes "user:password@" from a URL, and any query.
func stripUserinfo(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
		rest = rest[at+1:]
	}
	rest, _, _ = strings.Cut(rest, "?")
	return scheme + "://" + rest
}

// Text is the event as one line for people (Slack, `reconciler events`).
func Text(e CloudEvent) string {
	d := e.Data
	s := fmt.Sprintf("%s %s", d.App, e.Short())
	switch e.Short() {
	case Started, RollbackStarted:
		s += fmt.Sprintf(": %s -> %s", orNone(d.From), d.Target)
		if d.Waves > 0 {
			s += fmt.Sprintf(" in %d waves", d.Waves)
		}
	case WaveStarted, WaveDone:
		s += fmt.Sprintf(": wave %d of %d (%s)", d.Wave, d.Waves, d.Target)
	case WaveApproved:
		s += fmt.Sprintf(": up to wave %d of %d (%s) by commit %s", d.Wave, d.Waves, d.Target, short(d.Commit))
	case NodeUpgraded:
		s += fmt.Sprintf(": %s runs %s", d.Node, d.Target)
	case NodeFailed, HealthFailed:
		s += fmt.Sprintf(": %s on %s", d.Target, d.Node)
	case Completed:
		s += ": " + d.Target
		if r := d.Result; r != nil {
			s += fmt.Sprintf(" (%d upgraded, %d failed, %d skipped of %d)", r.Upgraded, r.Failed, r.Skipped, r.Total)
		}
	case Failed:
		s += ": " + d.Target
		if d.Node != "" {
			s += " on " + d.Node
		}
	case RollbackCommitted:
		s += fmt.Sprintf(": %s -> %s by commit %s", d.From, d.Target, short(d.RollbackCommit))
	}
	if d.Reason != "" {
		s += ": " + d.Reason
	}
	return s + " [by " + d.By + "]"
}

func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
