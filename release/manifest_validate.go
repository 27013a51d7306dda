package release

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// validName reports whether s has 1 to max characters, each an ASCII letter,
// digit or one of extra, and starts with a letter or digit.
func validName(s string, max int, extra string) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i, c := range s {
		alnum := c < 128 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		if !alnum && (i == 0 || !strings.ContainsRune(extra, c)) {
			return false
		}
	}
	return true
}

// Validate checks every field of the manifest and returns all problems at
// once (errors.Join), each naming its field: "release.json: command[0]
// \"/bin/web\": must be a path relative to the release". An empty driver is
// valid and means "process".
func (m *Manifest) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", ManifestName, field, fmt.Sprintf(format, args...)))
	}
	if err := spec.CheckName("app", m.App); err != nil {
		add("app", "%v", err)
	}
	if !validName(m.Version, 128, "._+-") {
		add("version", "%q: want 1-128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit", m.Version)
	}
	m.validateRun(add)
	m.validateListen(add)
	if m.DrainTimeout != "" {
		if d, err := time.ParseDuration(m.DrainTimeout); err != nil || d <= 0 {
			add("drainTimeout", "%q: want a positive Go duration such as \"10s\"", m.DrainTimeout)
		}
	}
	m.validateHealth(add)
	if h := m.Hooks; h != nil {
		validateArgv("hooks.install", h.Install, false, add)
		validateArgv("hooks.activate", h.Activate, false, add)
		validateArgv("hooks.rollback", h.Rollback, false, add)
		validateArgv("hooks.health", h.Health, false, add)
	}
	return errors.Join(errs...)
}

type addFunc func(field, format string, args ...any)

func (m *Manifest) validateRun(add addFunc) {
	switch m.Driver {
	case "", "process", "exec", "otp":
	default:
		add("driver", "%q: want \"process\" (default), \"exec\" or \"otp\"", m.Driver)
	}
	required := m.Driver == "" || m.Driver == "process"
	validateArgv("command", m.Command, required, add)
	if m.Driver == "exec" && (m.Hooks == nil || len(m.Hooks.Activate) == 0) {
		add("hooks.activate", "required by the exec driver")
	}
	for k, v := range m.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("env", "name %q: must be non-empty, without '=' or NUL", k)
		}
		if strings.ContainsRune(v, 0) {
			add("env."+k, "value contains NUL")
		}
	}
}

// validateArgv checks an argv whose first element is a program inside the
// release: a clean relative path that stays in the release directory.
func validateArgv(field string, argv []string, required bool, add addFunc) {
	if len(argv) == 0 {
		if required {
			add(field, "required: the program to run, relative to the release, and its arguments")
		}
		return
	}
	if p := argv[0]; !localPath(p) {
		add(field+"[0]", "%q: must be a path relative to the release, without '..'", p)
	}
	for i, a := range argv {
		if strings.ContainsRune(a, 0) {
			add(fmt.Sprintf("%s[%d]", field, i), "contains NUL")
		}
	}
}

// localPath reports whether p is a clean relative slash path inside its root.
func localPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

func (m *Manifest) validateListen(add addFunc) {
	seen := map[string]bool{}
	for i, l := range m.Listen {
		field := fmt.Sprintf("listen[%d]", i)
		if !validName(l.Name, 32, "_-") {
			add(field+".name", "%q: want 1-32 letters, digits, '_' or '-'", l.Name)
		} else if seen[l.Name] {
			add(field+".name", "%q: duplicate", l.Name)
		}
		seen[l.Name] = true
		switch l.Network {
		case "", "tcp":
			if _, _, err := net.SplitHostPort(l.Address); err != nil {
				add(field+".address", "%q: want host:port: %v", l.Address, err)
			}
		case "unix":
			if l.Address == "" {
				add(field+".address", "required: the socket path")
			}
		default:
			add(field+".network", "%q: want \"tcp\" (default) or \"unix\"", l.Network)
		}
	}
}

func (m *Manifest) validateHealth(add addFunc) {
	h := m.Health
	if h == nil {
		return
	}
	set := 0
	if h.HTTP != "" {
		set++
		if u, err := url.Parse(h.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("health.http", "%q: want an http:// or https:// URL", h.HTTP)
		}
	}
	if h.TCP != "" {
		set++
		if _, _, err := net.SplitHostPort(h.TCP); err != nil {
			add("health.tcp", "%q: want host:port: %v", h.TCP, err)
		}
	}
	if len(h.Exec) > 0 {
		set++
		validateArgv("health.exec", h.Exec, true, add)
	}
	if set != 1 {
		add("health", "set exactly one of http, tcp or exec (or leave health out)")
	}
}
