package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// stampedVersion and stampedCommit are what a build may stamp in with
// -ldflags (make build does), for builds whose module version is "(devel)"
// or whose VCS information Go could not read (a git worktree, -buildvcs=false):
//
//	go build -ldflags "-X github.com/fleetops/reconciler/cmd/reconciler/cli.stampedVersion=v1.4.0 \
//	  -X github.com/fleetops/reconciler/cmd/reconciler/cli.stampedCommit=$(git rev-parse HEAD)" ./cmd/reconciler
//
// They are link-time constants, set by nothing at run time.
var stampedVersion, stampedCommit string

// build is what `reconciler version` prints: the module version, and the
// VCS commit the binary was built from (debug.ReadBuildInfo).
type build struct {
	Version  string `json:"version"`            // module version, stamped, or "(devel)"
	Commit   string `json:"commit,omitempty"`   // vcs.revision
	Time     string `json:"time,omitempty"`     // vcs.time, the commit's
	Modified bool   `json:"modified,omitempty"` // built from a worktree with changes
	Go       string `json:"go"`
}

// buildOf reads the running binary's build information.
func buildOf() build {
	b := build{Version: "(devel)", Go: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		b = buildFrom(info)
	}
	return b.stamped(stampedVersion, stampedCommit)
}

// stamped overrides the version and commit with the stamped ones, if any.
func (b build) stamped(version, commit string) build {
	if version != "" {
		b.Version = version
	}
	if commit != "" && b.Commit == "" {
		b.Commit = commit
	}
	return b
}

// buildFrom extracts the version and VCS settings of info.
func buildFrom(info *debug.BuildInfo) build {
	b := build{Version: info.Main.Version, Go: info.GoVersion}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the one line of `reconciler --version`.
func (b build) String() string {
	s := b.Version
	if b.Commit != "" {
		s += fmt.Sprintf(" (commit %.12s", b.Commit)
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + b.Go
}

// versionCommands builds version.
func versionCommands(e *env) []*cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print reconciler's version and the commit it was built from",
		Long: `version prints the module version (or the one stamped with -ldflags, see
docs/cli.md), the VCS commit the binary was built from and whether the
worktree had changes, and the Go version. 'reconciler --version' prints the
same on one line.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			b := buildOf()
			if output == "json" {
				return writeJSON(e, b)
			}
			fmt.Fprintf(e.stdout, "reconciler %s\n", b)
			return nil
		},
	}
	registerOutput(c, &output)
	return []*cobra.Command{c}
}
