package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

const minimal = `package fleet

apps: web: {
	version: "1.0.0"
	artifact: url: "https://r.example/web-1.0.0.tar.gz"
	health: http: "http://127.0.0.1:8080/health"
}
`

func TestLoadFilesDefaults(t *testing.T) {
	f, err := LoadFiles(map[string][]byte{"a.cue": []byte(minimal)})
	if err != nil {
		t.Fatal(err)
	}
	app := f.Apps["web"]
	want := App{
		Name:    "web",
		Version: "1.0.0",
		Artifact: Artifact{
			URL:       "https://r.example/web-1.0.0.tar.gz",
			Signature: "https://r.example/web-1.0.0.tar.gz.sig",
		},
		Rollout: Rollout{
			Strategy: StrategyRolling, BatchSize: 3,
			BatchDelay: Duration{0}, NodeTimeout: Duration{60 * time.Second},
			RollbackOnFail: true, OnUnreachable: OnUnreachableSkip, Approve: ApproveNone,
			Canary: Canary{Count: 1, Monitor: Duration{5 * time.Minute}},
		},
		Health: Health{
			HTTP: "http://127.0.0.1:8080/health", RequiredStatus: RequiredStatusOK,
			Retries: 3, RetryDelay: Duration{5 * time.Second},
		},
		Nodes: Targets{All: true},
	}
	if !appEqual(app, want) {
		t.Errorf("app:\n%+v\nwant:\n%+v", app, want)
	}
	if len(f.Nodes) != 0 {
		t.Errorf("nodes = %v, want none", f.Nodes)
	}
}

// appEqual compares apps field by field (Targets holds slices and maps).
func appEqual(a, b App) bool {
	ta, _ := a.Nodes.MarshalJSON()
	tb, _ := b.Nodes.MarshalJSON()
	a.Nodes, b.Nodes = Targets{}, Targets{}
	return string(ta) == string(tb) && a.Name == b.Name && a.Version == b.Version &&
		a.Artifact == b.Artifact && reflect.DeepEqual(a.Rollout, b.Rollout) && a.Paused == b.Paused &&
		strings.Join(a.Health.Exec, " ") == strings.Join(b.Health.Exec, " ") &&
		a.Health.HTTP == b.Health.HTTP && a.Health.TCP == b.Health.TCP &&
		a.Health.RequiredStatus == b.Health.RequiredStatus &&
		a.Health.Retries == b.Health.Retries && a.Health.RetryDelay == b.Health.RetryDelay
}

func TestLoadFilesStandardLibraryAndHelpers(t *testing.T) {
	src := `package fleet

import "strings"

_base: {artifact: url: "https://r.example/\(strings.ToLower("WEB")).tar.gz"}
#Health: {http: "http://127.0.0.1:8080/health", ...}
apps: web: _base & {version: "1.0.0", health: #Health & {retries: 1}}
`
	f, err := LoadFiles(map[string][]byte{"a.cue": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Apps["web"].Artifact.URL; got != "https://r.example/web.tar.gz" {
		t.Errorf("url = %q", got)
	}
	if got := f.Apps["web"].Health.Retries; got != 1 {
		t.Errorf("retries = %d, want 1", got)
	}
}

func TestLoadDirExample(t *testing.T) {
	f, err := LoadDir("../examples/fleet")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Apps) != 4 || len(f.Nodes) != 6 {
		t.Fatalf("got %d apps and %d nodes, want 4 and 6", len(f.Apps), len(f.Nodes))
	}
	for name, app := range f.Apps {
		if app.Name != name {
			t.Errorf("apps[%q].Name = %q", name, app.Name)
		}
	}
	if got := f.Apps["workload"].Artifact.URL; got != "https://releases.example.com/workload/workload-1.2.0.tar.gz" {
		t.Errorf("workload url = %q (from the template)", got)
	}
	if got := f.Apps["metrics_relay"].Nodes.Selector["tier"]; got != "edge" {
		t.Errorf("metrics_relay selector tier = %q, want edge", got)
	}
	if got := f.Apps["ledger"].Nodes.Names; strings.Join(got, ",") != "eu-3,us-2" {
		t.Errorf("ledger nodes = %v", got)
	}
	if got := f.Nodes["eu-2"].Vars["PORT"]; got != "8082" {
		t.Errorf("eu-2 PORT = %q", got)
	}
}

func TestLoadDirPositionsAndSkips(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.cue"), strings.Replace(minimal, `"1.0.0"`, `"one"`, 1))
	write(t, filepath.Join(dir, "_scratch.cue"), "not cue at all {")
	write(t, filepath.Join(dir, "README.md"), "# fleet")
	_, err := LoadDir(dir)
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != 1 {
		t.Fatalf("LoadDir: %v, want one *Errors entry", err)
	}
	if got := errs.List[0].File; got != filepath.Join(dir, "a.cue") {
		t.Errorf("file = %q, want the directory joined with a.cue", got)
	}
}

func TestLoadDirNoFiles(t *testing.T) {
	_, err := LoadDir(t.TempDir())
	if !errors.Is(err, ErrNoFiles) {
		t.Errorf("LoadDir(empty) = %v, want ErrNoFiles", err)
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "load fleet") {
		t.Errorf("LoadDir(missing) = %v, want an error naming the fleet", err)
	}
}

func TestLoadCommit(t *testing.T) {
	repo, hash := newRepo(t, map[string]string{
		"fleet/apps.cue":  minimal,
		"fleet/bad.cue":   "package fleet\napps: web: paused: \"no\"\n",
		"fleet/sub/x.cue": "package other\n",
		"top.cue":         minimal,
	})
	_, err := LoadCommit(repo, hash, "fleet")
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("LoadCommit(fleet) = %v, want *Errors", err)
	}
	if got, want := errs.Error(), `fleet/bad.cue:2:20: apps.web.paused: got "no", want true or false`; got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
	for _, dir := range []string{"", ".", "/"} {
		f, err := LoadCommit(repo, hash, dir)
		if err != nil || f.Apps["web"].Version != "1.0.0" {
			t.Errorf("LoadCommit(%q) = %v, %v", dir, f, err)
		}
	}
	if _, err := LoadCommit(repo, hash, "nowhere"); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("LoadCommit(nowhere) = %v, want an error naming the directory", err)
	}
}

// newRepo commits files to a new repository in a temporary directory.
func newRepo(t *testing.T, files map[string]string) (*git.Repository, plumbing.Hash) {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		write(t, filepath.Join(dir, name), src)
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "test", Email: "test@example.com", When: time.Unix(1, 0)}
	hash, err := wt.Commit("fleet", &git.CommitOptions{Author: sig})
	if err != nil {
		t.Fatal(err)
	}
	return repo, hash
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
