package dashboard

import (
	"context"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// Source reads the fleet. The command line implements it with the readers
// of `status` and `history`; the server calls it from one goroutine.
type Source interface {
	// Snapshot reads the whole fleet now. An error (an unreachable Git
	// server or etcd, a bad --repo) becomes the page's banner.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// Watch calls wake whenever the shared state or the tracked branch may
	// have changed, until ctx is done. A store that pushes changes (etcd)
	// makes the page follow within milliseconds; the Git store is polled.
	Watch(ctx context.Context, wake func()) error
}

// Snapshot is everything the page shows, as JSON (GET api/snapshot, and
// each server-sent event).
type Snapshot struct {
	Time   time.Time `json:"time"` // when it was read, by the server's clock
	Repo   string    `json:"repo"`
	Shared string    `json:"shared"`
	Branch string    `json:"branch"`
	Tip    string    `json:"tip,omitempty"`
	// Error is why the fleet could not be read just now; the rest is then
	// the last snapshot that could (empty when none could).
	Error string `json:"error,omitempty"`
	// Reading is set only before the first read has ended.
	Reading  bool     `json:"reading,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Apps are the apps of the last valid specs with their target version.
	Apps []App `json:"apps"`
	// Nodes are the declared and reporting nodes, sorted by name.
	Nodes []Node `json:"nodes"`
	// Rollouts are `reconciler status --output json` for every app.
	Rollouts []reconciler.Status `json:"rollouts"`
	// History is `reconciler history --output json` (newest first), each
	// entry with the key that signed its commit, when signed.
	History any `json:"history"`
}

// App is one app of the specs.
type App struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	// Strategy is the rollout strategy (rolling, canary, all_at_once).
	Strategy string `json:"strategy"`
	Paused   bool   `json:"paused,omitempty"`
}

// Node is one node: its labels, its last report, and what the rollout
// records say about it.
type Node struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	// Report is nil when the node never reported.
	Report *reconciler.NodeReport `json:"report,omitempty"`
	// Events are the rollout-record events naming this node, newest first.
	Events []NodeEvent `json:"events"`
}

// NodeEvent is one rollout-record event of one app.
type NodeEvent struct {
	App string `json:"app"`
	reconciler.Event
}
