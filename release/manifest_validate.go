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
	if !ValidVersion(m.Version) {
		add("version", "%q: want 1-128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit", m.Version)
	}
	m.validateRun(add)
	m.validateListen(add)
	if m.DrainTimeout != "" {
		if d, err := time.ParseDuration(m.DrainTimeout); err != nil || d <= 0 || d > MaxDrainTimeout {
			add("drainTimeout", "%q: want a positive Go duration such as \"10s\", at most %s", m.DrainTimeout, MaxDrainTimeout)
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

// ValidVersion reports whether v is a release version: 1-128 ASCII
// letters, digits, '.', '_', '+' or '-', starting with a letter or digit.
// Versions name directories on nodes; one from anywhere else (a spec, a
// rollout record in a shared ref) is checked with it before it is used.
func ValidVersion(v string) bool { return validName(v, 128, "._+-") }

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
		if LoadsCode(k) && strings.Contains(v, "${") {
			add("env."+k, "%q: a variable that chooses code to load or run may not use node variables (${...}): the fleet repo may not choose a program", v)
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
			validateUnixAddress(field+".address", l.Address, add)
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

// MaxUnixAddress is the longest unix socket path (sun_path holds 108 bytes,
// NUL included).
const MaxUnixAddress = 107

// validateUnixAddress checks a unix listen address: "@name" (the abstract
// namespace, no file), a clean relative path (under the agent's socket
// directory) or a clean absolute path (which the agent accepts only under a
// socket directory of its configuration).
func validateUnixAddress(field, a string, add addFunc) {
	switch {
	case a == "":
		add(field, "required: the socket path")
	case strings.ContainsRune(a, 0):
		add(field, "contains NUL")
	case len(a) > MaxUnixAddress:
		add(field, "%q: %d bytes, at most %d", a, len(a), MaxUnixAddress)
	case strings.HasPrefix(a, "@"):
	case path.IsAbs(a) && path.Clean(a) == a:
	case !path.IsAbs(a) && localPath(a):
	default:
		add(field, "%q: want a clean socket path (\"web.sock\", under the agent's socket directory, or an absolute path under one) or \"@name\"", a)
	}
}

// codeEnv are environment variables that make a program, a shell or a
// runtime load or run other code than the release's: LoadsCode.
var codeEnv = map[string]bool{
	"PATH": true, "BASH_ENV": true, "ENV": true, "SHELLOPTS": true, "IFS": true,
	"PYTHONPATH": true, "PYTHONSTARTUP": true, "PYTHONHOME": true,
	"PERL5LIB": true, "PERL5OPT": true, "PERLLIB": true,
	"RUBYLIB": true, "RUBYOPT": true, "NODE_OPTIONS": true, "NODE_PATH": true,
	"JAVA_TOOL_OPTIONS": true, "_JAVA_OPTIONS": true, "JDK_JAVA_OPTIONS": true, "CLASSPATH": true,
	"ERL_FLAGS": true, "ERL_AFLAGS": true, "ERL_ZFLAGS": true, "ERL_LIBS": true,
	"VMARGS_PATH": true, "RELX_CONFIG_PATH": true, "RELEASE_ROOT_DIR": true, "ROOTDIR": true, "BINDIR": true,
	"GCONV_PATH": true, "GODEBUG": true,
}

// LoadsCode reports whether the environment variable name chooses code to
// load or run (the dynamic loader's LD_*, PATH, interpreters' search paths
// and option variables): a manifest may set it, but not from node variables.
func LoadsCode(name string) bool { return strings.HasPrefix(name, "LD_") || codeEnv[name] }
