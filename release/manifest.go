package release

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
