package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

// fixture is a real fleet for the CLI's Go tests: a bare fleet repo, a
// signing key pair and signed releases of "hello", a release of the exec
// driver whose hooks always succeed.
type fixture struct {
	t        *testing.T
	dir      string
	repo     string // the bare fleet repo
	pub, key string // the release signing keys (empty password)
	releases string // hello-<v>.tar.gz and .sig
}

func newFixture(t *testing.T, versions ...string) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir()}
	f.releases = filepath.Join(f.dir, "releases")
	priv, pub, err := signing.GenerateKeyPair([]byte(""))
	if err != nil {
		t.Fatal(err)
	}
	f.key, f.pub = filepath.Join(f.dir, "release.key"), filepath.Join(f.dir, "release.pub")
	must(t, os.WriteFile(f.key, priv, 0o600))
	must(t, os.WriteFile(f.pub, pub, 0o644))
	must(t, os.MkdirAll(f.releases, 0o755))
	for _, v := range versions {
		f.pack(v, execRelease)
	}
	f.repo = gittest.NewBare(t, f.spec("1.0.0", ""))
	return f
}

// Release kinds the fixture packs.
const (
	execRelease   = "exec"    // hooks that always succeed
	ownPortRelase = "ownport" // a process release that declares no listen sockets
)

// pack signs a hello release of kind at v and returns the artifact.
func (f *fixture) pack(v, kind string) string {
	f.t.Helper()
	src := filepath.Join(f.dir, "src-"+v)
	must(f.t, os.MkdirAll(filepath.Join(src, "hooks"), 0o755))
	must(f.t, os.WriteFile(filepath.Join(src, "hooks", "ok.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	must(f.t, os.WriteFile(filepath.Join(src, "hooks", "serve.sh"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755))
	m := `{"driver": "exec", "hooks": {"activate": ["hooks/ok.sh"], "health": ["hooks/ok.sh"]}}`
	if kind == ownPortRelase {
		m = `{"command": ["hooks/serve.sh"]}`
	}
	must(f.t, os.WriteFile(filepath.Join(src, release.ManifestName), []byte(m), 0o644))
	var art bytes.Buffer
	must(f.t, release.Pack(src, "hello", v, &art))
	k, err := signing.LoadPrivateKey(mustRead(f.t, f.key), []byte(""))
	must(f.t, err)
	sig, err := signing.Sign(bytes.NewReader(art.Bytes()), k)
	must(f.t, err)
	path := filepath.Join(f.releases, "hello-"+v+".tar.gz")
	must(f.t, os.WriteFile(path, art.Bytes(), 0o644))
	must(f.t, os.WriteFile(path+".sig", sig, 0o644))
	return path
}

// spec is the fleet's CUE: hello at version on nodes n1..n3, with extra
// fields inside apps: hello: {...}.
func (f *fixture) spec(version, extra string) map[string]string {
	return map[string]string{"fleet.cue": fmt.Sprintf(`package fleet

nodes: n1: labels: tier: "web"
nodes: n2: labels: tier: "web"
nodes: n3: labels: tier: "web"

apps: hello: {
	version: %q
	artifact: url: "file://%s/hello-\(version).tar.gz"
	rollout: {strategy: "rolling", batchSize: 2}
	health: exec: ["hooks/ok.sh"]
	%s
}
`, version, f.releases, extra)}
}

// push commits files to branch of the fleet repo, as a person would.
func (f *fixture) push(branch string, files map[string]string, msg string) string {
	f.t.Helper()
	return gittest.PushFiles(f.t, f.repo, branch, files, msg)
}

// cliResult is one run of the command line, in this process.
type cliResult struct {
	stdout, stderr string
	code           int
}

// run runs reconciler with args in dir (the fixture's directory when "")
// and returns what it printed and its exit code.
func (f *fixture) run(args ...string) cliResult {
	return f.runIn(f.dir, args...)
}

func (f *fixture) runIn(dir string, args ...string) cliResult {
	f.t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, stdin: strings.NewReader(""), wd: dir, getenv: func(k string) string {
		switch k {
		case "GIT_AUTHOR_NAME":
			return "Ada Lovelace"
		case "GIT_AUTHOR_EMAIL":
			return "ada@example.com"
		}
		return ""
	}}
	code := run(context.Background(), e, args)
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}
