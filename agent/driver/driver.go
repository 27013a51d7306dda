// Package driver defines how the agent runs one app's releases on a node, and
// holds the drivers: process (agent-supervised process with inherited
// sockets), exec (the release's own hooks) and otp (Erlang release_handler).
//
// Invariant: a failed Switch leaves the previous version running (or nothing,
// when there was none); a driver never leaves a node with nothing running
// when something ran before.
package driver

import (
	"context"
	"encoding/json"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
)

// Release is a verified, unpacked release ready to run on this node.
type Release struct {
	App     string
	Version string
	// Dir is the unpacked release directory (read-only for drivers).
	Dir string
	// Manifest has node variables already substituted.
	Manifest release.Manifest
	// Env is added to the workload's environment (RECONCILER_NODE,
	// RECONCILER_APP, RECONCILER_VERSION and the like).
	Env map[string]string
}

// Running is what a driver runs for an app. It is persisted in the agent's
// local state so that a restarted agent can adopt the workload.
type Running struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Dir     string `json:"dir"`
	PIDs    []int  `json:"pids,omitempty"`
	// Data is driver-specific state (opaque to the agent).
	Data json.RawMessage `json:"data,omitempty"`
}

// HealthFunc checks the health of the version being switched to, with the
// spec's retries. Drivers call it before retiring the previous version.
type HealthFunc func(ctx context.Context) error

// Driver runs releases of one kind. Implementations are safe for use by one
// agent; each app is driven by one goroutine at a time.
type Driver interface {
	// Switch makes next the running version of its app. cur is nil on a first
	// install. On success it returns the new Running; on error the previous
	// version (if any) still runs and the error says why.
	Switch(ctx context.Context, cur *Running, next Release, healthy HealthFunc) (Running, error)
	// Adopt takes back a workload left running by a previous agent process.
	// It also settles a switch that process was killed in (what a driver
	// records in Running.Data is its journal; see each driver's doc).
	Adopt(ctx context.Context, r Running) error
	// Stop stops the app's workload.
	Stop(ctx context.Context, r Running) error
}

// ReleaseLister is implemented by drivers whose runtime keeps several
// releases side by side (otp); the agent puts them in its node report, so
// `reconciler audit` and `versions` show what the runtime really runs.
type ReleaseLister interface {
	Releases(ctx context.Context, r Running) ([]reconciler.RuntimeRelease, error)
}
