package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fleet is a fleet repo's resolved desired state: every app spec and the
// declared node inventory, with defaults applied.
type Fleet struct {
	Apps  map[string]App  `json:"apps"`
	Nodes map[string]Node `json:"nodes,omitempty"`
}

// App is one app's desired version, artifact, rollout options, health check
// and targets (docs/design.md, docs/spec.md).
type App struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Artifact Artifact `json:"artifact"`
	Rollout  Rollout  `json:"rollout"`
	Health   Health   `json:"health"`
	Nodes    Targets  `json:"nodes"`
	Paused   bool     `json:"paused"`
}

// Artifact says where the signed release of this version is.
type Artifact struct {
	URL       string `json:"url"`
	SHA256    string `json:"sha256,omitempty"`
	Signature string `json:"signature"`
}

// Approval gates (rollout.approve).
const (
	ApproveNone        = "none"
	ApproveAfterCanary = "after-canary"
	ApproveEachWave    = "each-wave"
)

// Strategies.
const (
	StrategyRolling    = "rolling"
	StrategyCanary     = "canary"
	StrategyAllAtOnce  = "all_at_once"
	OnUnreachableSkip  = "skip"
	OnUnreachableFail  = "fail"
	RequiredStatusOK   = "ok"
	RequiredStatusDegr = "degraded"
)

// Rollout holds how a new version moves through the fleet.
type Rollout struct {
	Strategy       string   `json:"strategy"`
	BatchSize      int      `json:"batchSize"`
	BatchDelay     Duration `json:"batchDelay"`
	NodeTimeout    Duration `json:"nodeTimeout"`
	RollbackOnFail bool     `json:"rollbackOnFail"`
	OnUnreachable  string   `json:"onUnreachable"`
	// MaxFailures is the failure budget: how many nodes may fail and be
	// skipped before the rollout fails (docs/rollouts.md, "Failure budget").
	MaxFailures Budget `json:"maxFailures"`
	// Windows: a node starts a switch only inside one of them (none: any
	// time); Freeze: and outside every freeze. Rollbacks ignore both
	// (docs/rollouts.md, "Maintenance windows and freezes").
	Windows []Window `json:"windows,omitempty"`
	Freeze  []Freeze `json:"freeze,omitempty"`
	// Approve is the approval gate: "none", "after-canary" (the second
	// wave waits for `reconciler promote`) or "each-wave" (every wave after
	// the first does). Rollbacks ignore it (docs/rollouts.md, "Approvals").
	Approve string `json:"approve"`
	// Stages are the rollout's rings: a node moves in the first stage
	// whose selector matches it, the nodes no stage matches last
	// (docs/rollouts.md, "Stages").
	Stages []Stage `json:"stages,omitempty"`
	Canary Canary  `json:"canary"`
}

// Stage is one ring of a rollout: the nodes Nodes selects move in waves of
// BatchSize (0: the rollout's batchSize), and the next stage's first wave
// opens Bake after this stage's last wave is done (0: after batchDelay).
type Stage struct {
	Nodes     Targets  `json:"nodes"`
	BatchSize int      `json:"batchSize,omitempty"`
	Bake      Duration `json:"bake"`
}

// Window is a maintenance window: on Days, from Start to End ("HH:MM",
// End "24:00" for midnight; an End before Start runs past midnight) in
// Timezone (an IANA name, default "UTC").
type Window struct {
	Days     []string `json:"days"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Timezone string   `json:"timezone"`
}

// UnmarshalJSON reads a window, taking timezone "UTC" when left out.
func (w *Window) UnmarshalJSON(b []byte) error {
	type plain Window
	p := plain{Timezone: "UTC"}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*w = Window(p)
	return nil
}

// Freeze is a span of time, RFC 3339 From to To, in which no node starts a
// switch, with the reason people see.
type Freeze struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Reason string    `json:"reason,omitempty"`
}

// Canary configures the canary strategy.
type Canary struct {
	Count   int      `json:"count"`
	Monitor Duration `json:"monitor"`
}

// Health is the check a node runs after switching versions. Exactly one of
// HTTP, TCP and Exec is set.
type Health struct {
	HTTP           string   `json:"http,omitempty"`
	TCP            string   `json:"tcp,omitempty"`
	Exec           []string `json:"exec,omitempty"`
	RequiredStatus string   `json:"requiredStatus"`
	Retries        int      `json:"retries"`
	RetryDelay     Duration `json:"retryDelay"`
	// Prometheus is the server Metrics are asked of (docs/spec.md).
	Prometheus string `json:"prometheus,omitempty"`
	// Metrics are the metric gates: each fails the node when a value of
	// its query leaves its bounds (docs/rollouts.md).
	Metrics []Metric `json:"metrics,omitempty"`
}

// Metric is one metric gate: a PromQL query, with ${VAR} node variables,
// whose every series must stay at most Max and at least Min (either may be
// unset, not both), asked every Interval for For after each node's switch
// and during a canary's monitor.
type Metric struct {
	Name     string   `json:"name"`
	Query    string   `json:"query"`
	Max      *float64 `json:"max,omitempty"`
	Min      *float64 `json:"min,omitempty"`
	For      Duration `json:"for"`
	Interval Duration `json:"interval"`
}

// Metric defaults (docs/spec.md).
const (
	DefaultMetricFor      = time.Minute
	DefaultMetricInterval = 15 * time.Second
)

// UnmarshalJSON reads a metric gate, taking the default of for and
// interval when the JSON leaves them out.
func (m *Metric) UnmarshalJSON(b []byte) error {
	type plain Metric // without this method
	p := plain{For: Duration{DefaultMetricFor}, Interval: Duration{DefaultMetricInterval}}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*m = Metric(p)
	return nil
}

// Bounds writes the metric's bounds as its checks read: "<= 0.05",
// ">= 10", ">= 10 and <= 20".
func (m Metric) Bounds() string {
	var parts []string
	if m.Min != nil {
		parts = append(parts, ">= "+formatFloat(*m.Min))
	}
	if m.Max != nil {
		parts = append(parts, "<= "+formatFloat(*m.Max))
	}
	return strings.Join(parts, " and ")
}

// formatFloat writes f in the shortest form that reads back as f.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Targets selects the nodes an app runs on: all nodes, a list of names, or
// a label selector (every label must match). Exactly one form is set.
type Targets struct {
	All      bool              `json:"-"`
	Names    []string          `json:"-"`
	Selector map[string]string `json:"-"`
}

// MarshalJSON renders targets the way they are written in CUE.
func (t Targets) MarshalJSON() ([]byte, error) {
	switch {
	case t.Names != nil:
		return json.Marshal(t.Names)
	case t.Selector != nil:
		return json.Marshal(t.Selector)
	default:
		return json.Marshal("all")
	}
}

// UnmarshalJSON accepts "all", a list of names or a selector map.
func (t *Targets) UnmarshalJSON(b []byte) error {
	*t = Targets{}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "all" {
			return fmt.Errorf("nodes: want \"all\", a list of node names or a label selector, got %q", s)
		}
		t.All = true
		return nil
	}
	if err := json.Unmarshal(b, &t.Names); err == nil {
		return nil
	}
	return json.Unmarshal(b, &t.Selector)
}

// Node is a declared node: its labels, its per-node variables, and the
// gates an operator put on it (docs/rollouts.md, "Holds and pins").
type Node struct {
	Labels map[string]string `json:"labels,omitempty"`
	Vars   map[string]string `json:"vars,omitempty"`
	// Hold: the node takes no upgrade of any app; rollbacks still apply.
	Hold bool `json:"hold,omitempty"`
	// Pin maps an app to the version the node stays on: it takes no
	// rollout of that app to any other version, rollbacks included.
	Pin map[string]string `json:"pin,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}
