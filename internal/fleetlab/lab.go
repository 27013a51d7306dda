// Package fleetlab builds a real fleet on one machine, for the fleet tests
// and `make demo`: the reconciler binary, signed releases of the example
// workload at several versions, a bare fleet repo, and agent processes, each
// a node with its own state directory, port and log.
//
// Everything is real (git, signatures, processes, sockets); nothing is
// mocked. Close kills every agent and workload it started.
package fleetlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

// Options configure a lab.
type Options struct {
	// Dir holds everything the lab makes (required; it is not removed).
	Dir string
	// Root is the module root, where `go build` runs (required).
	Root string
	// Versions of the example workload to build, pack and sign as app App.
	Versions []string
	// Broken versions build with the setting that fails their health check.
	Broken map[string]bool
	// App is the app name of the releases (default "web").
	App string
	// Env is extra environment in every release's manifest; values may use
	// node variables, ${NAME} (default none).
	Env map[string]string
	// VersionEnv is more environment in the manifests of some versions, by
	// version (WORKLOAD_ERROR_RATE: a version that answers errors while
	// its health check passes).
	VersionEnv map[string]map[string]string
	// Progress, when set, receives one line per step.
	Progress io.Writer
}

// Lab is a fleet on this machine.
type Lab struct {
	opt        Options
	Reconciler string // the reconciler binary
	PubKey     string // the key agents trust
	PrivKey    string // its private half (empty password)
	Releases   string // directory of <app>-<version>.tar.gz and .sig

	key      *signing.PrivateKey
	nodesDir string // where agents keep their state and logs
	mu       sync.Mutex
	agents   []*Agent
	ports    *ports // handed out to this lab's agents (shared with its fleets)
}

// ports remembers the ports a lab handed out: the kernel may give a port
// that was free when asked (FreePort closes its listener) to the next ask
// too, and two agents of one lab then fight over it (seen in make demo
// under load: two agents with one /healthz port).
type ports struct {
	mu   sync.Mutex
	used map[int]bool
}

// freePort is FreePort, never twice the same port for one lab.
func (l *Lab) freePort() (int, error) {
	l.ports.mu.Lock()
	defer l.ports.mu.Unlock()
	for range 100 {
		p, err := FreePort()
		if err != nil {
			return 0, err
		}
		if !l.ports.used[p] {
			l.ports.used[p] = true
			return p, nil
		}
	}
	return 0, errors.New("fleetlab: no loopback port that this lab has not handed out already")
}

// Fleet returns a lab that shares l's binaries and releases but keeps its
// agents' state and logs under dir, and closes only its own agents.
func (l *Lab) Fleet(dir string) *Lab {
	return &Lab{opt: l.opt, Reconciler: l.Reconciler, PubKey: l.PubKey, PrivKey: l.PrivKey,
		Releases: l.Releases, key: l.key, nodesDir: dir, ports: l.ports}
}

// New builds the binaries and the signed releases.
func New(ctx context.Context, opt Options) (*Lab, error) {
	if opt.Dir == "" || opt.Root == "" {
		return nil, errors.New("fleetlab: Dir and Root are required")
	}
	if opt.App == "" {
		opt.App = "web"
	}
	l := &Lab{opt: opt, Releases: filepath.Join(opt.Dir, "releases"), nodesDir: filepath.Join(opt.Dir, "nodes"),
		ports: &ports{used: map[int]bool{}}}
	for _, d := range []string{l.Releases, filepath.Join(opt.Dir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("fleetlab: %w", err)
		}
	}
	l.Reconciler = filepath.Join(opt.Dir, "bin", "reconciler")
	l.say("building reconciler")
	if err := l.gobuild(ctx, l.Reconciler, "", "./cmd/reconciler"); err != nil {
		return nil, err
	}
	var err error
	if l.key, err = l.keys(); err != nil {
		return nil, err
	}
	for _, v := range opt.Versions {
		if err := l.release(ctx, v); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) say(format string, args ...any) {
	if l.opt.Progress != nil {
		fmt.Fprintf(l.opt.Progress, format+"\n", args...)
	}
}

func (l *Lab) gobuild(ctx context.Context, out, ldflags, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = l.opt.Root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("fleetlab: go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// keys makes the release signing key pair (cosign format, empty password).
func (l *Lab) keys() (*signing.PrivateKey, error) {
	priv, pub, err := signing.GenerateKeyPair([]byte(""))
	if err != nil {
		return nil, fmt.Errorf("fleetlab: keys: %w", err)
	}
	l.PrivKey, l.PubKey = filepath.Join(l.opt.Dir, "release.key"), filepath.Join(l.opt.Dir, "release.pub")
	if err := os.WriteFile(l.PrivKey, priv, 0o600); err != nil {
		return nil, fmt.Errorf("fleetlab: %w", err)
	}
	if err := os.WriteFile(l.PubKey, pub, 0o644); err != nil {
		return nil, fmt.Errorf("fleetlab: %w", err)
	}
	return signing.LoadPrivateKey(priv, []byte(""))
}

// release builds the workload at v and packs and signs it as Options.App.
func (l *Lab) release(ctx context.Context, v string) error {
	l.say("building and signing release %s %s", l.opt.App, v)
	flags := "-X main.version=" + v
	if l.opt.Broken[v] {
		flags += " -X main.broken=true"
	}
	if err := l.gobuild(ctx, l.workload(v), flags, "./examples/workload"); err != nil {
		return err
	}
	_, err := l.ReleaseAs(l.opt.App, v, "PORT")
	return err
}

// workload is the example workload built at version v.
func (l *Lab) workload(v string) string {
	return filepath.Join(l.opt.Dir, "bin", "workload-"+v)
}

// ReleaseAs packs and signs the workload at version v (one of
// Options.Versions) as app, listening on 127.0.0.1:${port} where port names a
// node variable, and returns the artifact's path. New releases every version
// as Options.App on ${PORT}.
func (l *Lab) ReleaseAs(app, v, port string) (string, error) {
	dir := filepath.Join(l.opt.Dir, "src", app+"-"+v)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return "", fmt.Errorf("fleetlab: %w", err)
	}
	if err := os.Link(l.workload(v), filepath.Join(dir, "bin", "workload")); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("fleetlab: %w", err)
	}
	m := release.Manifest{App: app, Version: v, Command: []string{"bin/workload", "-drain", "5s"},
		Listen:       []release.Listener{{Name: "http", Address: "127.0.0.1:${" + port + "}"}},
		Env:          l.env(v),
		DrainTimeout: "5s"}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, release.ManifestName), mj, 0o644); err != nil {
		return "", fmt.Errorf("fleetlab: %w", err)
	}
	return l.Pack(dir, app, v)
}

// env is the manifest environment of version v: Env and VersionEnv[v].
func (l *Lab) env(v string) map[string]string {
	if len(l.opt.VersionEnv[v]) == 0 {
		return l.opt.Env
	}
	env := maps.Clone(l.opt.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, l.opt.VersionEnv[v])
	return env
}

// Pack packs the release directory dir as app at version v, signs it with
// the lab's key into Releases, and returns the artifact's path.
func (l *Lab) Pack(dir, app, v string) (string, error) {
	var art bytes.Buffer
	if err := release.Pack(dir, app, v, &art); err != nil {
		return "", fmt.Errorf("fleetlab: pack %s %s: %w", app, v, err)
	}
	sig, err := signing.Sign(bytes.NewReader(art.Bytes()), l.key)
	if err != nil {
		return "", fmt.Errorf("fleetlab: sign %s %s: %w", app, v, err)
	}
	path := l.artifact(app, v)
	if err := os.WriteFile(path, art.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("fleetlab: %w", err)
	}
	if err := os.WriteFile(path+".sig", sig, 0o644); err != nil {
		return "", fmt.Errorf("fleetlab: %w", err)
	}
	return path, nil
}

// Artifact is the path of the release of version v.
func (l *Lab) Artifact(v string) string {
	return l.artifact(l.opt.App, v)
}

func (l *Lab) artifact(app, v string) string {
	return filepath.Join(l.Releases, app+"-"+v+".tar.gz")
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Git runs git in dir with no user configuration and a fixed identity.
func Git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Fleet Operator", "GIT_AUTHOR_EMAIL=ops@example.com",
		"GIT_COMMITTER_NAME=Fleet Operator", "GIT_COMMITTER_EMAIL=ops@example.com")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// InitRepo makes a bare fleet repo at dir whose main holds files.
func InitRepo(dir string, files map[string]string) error {
	if _, err := Git(".", "init", "-q", "--bare", "-b", "main", dir); err != nil {
		return err
	}
	return Push(dir, files, "Initial fleet")
}

// Push commits files (replacing those paths) on main of the repository at
// url and pushes, as a person would; it returns the new commit.
func Push(url string, files map[string]string, message string) error {
	work, err := os.MkdirTemp("", "fleetlab-clone-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if _, err := Git(work, "clone", "-q", url, "."); err != nil {
		return err
	}
	if _, err := Git(work, "checkout", "-q", "-B", "main"); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := Git(work, "add", "-A"); err != nil {
		return err
	}
	if _, err := Git(work, "commit", "-q", "-m", message); err != nil {
		return err
	}
	_, err = Git(work, "push", "-q", "origin", "main")
	return err
}

// Main builds a lab in a temporary directory (opt.Dir is ignored), runs run
// with it and removes everything; it returns run's exit code, or 1 when the
// lab cannot be built. Test packages call it from TestMain:
//
//	os.Exit(fleetlab.Main(opts, func(l *fleetlab.Lab) int { lab = l; return m.Run() }))
//
// Under -short (make test-unit) it runs no test: the fleet tests build
// binaries and start agent processes, which the fast tier leaves out.
func Main(opt Options, run func(*Lab) int) int {
	flag.Parse()
	if short := flag.Lookup("test.short"); short != nil && short.Value.String() == "true" {
		if err := flag.Set("test.skip", "."); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return run(nil)
	}
	dir, err := os.MkdirTemp("", "fleetlab-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opt.Dir = dir
	l, err := New(ctx, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return run(l)
}
