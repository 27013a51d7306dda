package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// ManifestName is the file at the root of every release artifact.
const ManifestName = "release.json"

// Manifest is release.json, the public contract between release pipelines and
// agents (docs/release-manifest.md).
type Manifest struct {
	App     string `json:"app"`
	Version string `json:"version"`
	// Driver runs the release: "process" (default), "exec" or "otp".
	Driver string `json:"driver,omitempty"`
	// Command is the workload's argv; its first element is relative to the
	// unpacked release directory.
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Listen names the sockets the agent opens and passes to the workload
	// (LISTEN_FDS, fds from 3, in this order).
	Listen       []Listener `json:"listen,omitempty"`
	DrainTimeout string     `json:"drainTimeout,omitempty"`
	Health       *Health    `json:"health,omitempty"`
	Hooks        *Hooks     `json:"hooks,omitempty"`
}

// Listener is one socket the agent owns on the workload's behalf.
type Listener struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Network is "tcp" (default) or "unix".
	Network string `json:"network,omitempty"`
}

// Health overrides the app spec's health target for this release.
type Health struct {
	HTTP string   `json:"http,omitempty"`
	TCP  string   `json:"tcp,omitempty"`
	Exec []string `json:"exec,omitempty"`
}

// Hooks are the exec driver's commands, each an argv relative to the release.
type Hooks struct {
	Install  []string `json:"install,omitempty"`
	Activate []string `json:"activate,omitempty"`
	Rollback []string `json:"rollback,omitempty"`
	Health   []string `json:"health,omitempty"`
}

// Defaults applied by ParseManifest and DrainTimeoutDuration.
const (
	DefaultDriver       = "process"
	DefaultDrainTimeout = 10 * time.Second
	// MaxDrainTimeout bounds drainTimeout: a release cannot hold its
	// app's switches for longer.
	MaxDrainTimeout = time.Hour
	// MaxManifestSize bounds release.json.
	MaxManifestSize = 1 << 20
)

// ParseManifest decodes release.json strictly (unknown keys and trailing data
// are errors), applies the defaults (driver "process") and validates it.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", ManifestName, len(data), MaxManifestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s is empty: want a JSON object with at least \"command\" (docs/release-manifest.md)", ManifestName)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the JSON object", ManifestName)
	}
	if m.Driver == "" {
		m.Driver = DefaultDriver
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// DrainTimeoutDuration returns drainTimeout, or DefaultDrainTimeout when it
// is empty or invalid (Validate reports invalid ones).
func (m *Manifest) DrainTimeoutDuration() time.Duration {
	d, err := time.ParseDuration(m.DrainTimeout)
	if m.DrainTimeout == "" || err != nil || d <= 0 || d > MaxDrainTimeout {
		return DefaultDrainTimeout
	}
	return d
}

// String names the release: "web 1.1.0".
func (m *Manifest) String() string { return m.App + " " + m.Version }
