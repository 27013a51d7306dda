package agent

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
)

// varRef is a ${NAME} reference to a node variable.
var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces every ${NAME} in s with vars[NAME]. An undefined variable
// is an error that names it (never an empty string).
func expand(s string, vars map[string]string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("undefined node variable %s in %q (set it in the fleet repo's nodes.<node>.vars or with --var %s=...)",
			strings.Join(missing, ", "), s, missing[0])
	}
	return out, nil
}

func expandAll(ss []string, vars map[string]string) ([]string, error) {
	if ss == nil {
		return nil, nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		var err error
		if out[i], err = expand(s, vars); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// nodeVars merges the spec's declared variables for node with the flags'
// (which win).
func nodeVars(fleet *spec.Fleet, node string, flags map[string]string) map[string]string {
	vars := map[string]string{}
	if n, ok := fleet.Nodes[node]; ok {
		maps.Copy(vars, n.Vars)
	}
	maps.Copy(vars, flags)
	return vars
}

// nodeLabels merges the spec's declared labels for node with the flags'.
func nodeLabels(fleet *spec.Fleet, node string, flags map[string]string) map[string]string {
	labels := map[string]string{}
	if n, ok := fleet.Nodes[node]; ok {
		maps.Copy(labels, n.Labels)
	}
	maps.Copy(labels, flags)
	return labels
}

// expandManifest substitutes node variables in the manifest's listen
// addresses, env values, command and health target, then validates the
// result again: node variables come from the fleet repo, which may pass
// values but never make a release run a program outside itself or bind a
// socket where it may not (the drivers check the files themselves at run
// time, symlinks resolved; see release.Program).
func expandManifest(m release.Manifest, vars map[string]string) (release.Manifest, error) {
	out, err := substitute(m, vars)
	if err != nil {
		return m, err
	}
	if err := out.Validate(); err != nil {
		return m, fmt.Errorf("after substituting node variables: %w", err)
	}
	return out, nil
}

func substitute(m release.Manifest, vars map[string]string) (release.Manifest, error) {
	var err error
	out := m
	out.Listen = slices.Clone(m.Listen)
	for i := range out.Listen {
		if out.Listen[i].Address, err = expand(m.Listen[i].Address, vars); err != nil {
			return m, fmt.Errorf("listen %s: %w", m.Listen[i].Name, err)
		}
	}
	if len(m.Env) > 0 {
		out.Env = map[string]string{}
		for k, v := range m.Env {
			if out.Env[k], err = expand(v, vars); err != nil {
				return m, fmt.Errorf("env %s: %w", k, err)
			}
		}
	}
	if out.Command, err = expandAll(m.Command, vars); err != nil {
		return m, fmt.Errorf("command: %w", err)
	}
	if m.Health != nil {
		h := *m.Health
		if h.HTTP, err = expand(h.HTTP, vars); err == nil {
			if h.TCP, err = expand(h.TCP, vars); err == nil {
				h.Exec, err = expandAll(h.Exec, vars)
			}
		}
		if err != nil {
			return m, fmt.Errorf("health: %w", err)
		}
		out.Health = &h
	}
	return out, nil
}
