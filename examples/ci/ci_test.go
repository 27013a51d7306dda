// Package ci holds the pull-request pipelines of examples/ci. Its test runs
// their shell steps as a CI runner would, with the reconciler binary built
// from this checkout, a real fleet repo with signed releases, and a small
// stand-in for the GitHub and GitLab comment APIs (which do not run here).
package ci

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

const marker = "<!-- reconciler-diff -->"

// comments is the stand-in for a code host's pull-request comments: list,
// create and update, as the GitHub and GitLab REST APIs answer them.
type comments struct {
	mu      sync.Mutex
	bodies  map[int]string
	next    int
	creates int
	updates int
}

type comment struct {
	ID   int    `json:"id"`
	Body string `json:"body"`
}

func (c *comments) serve(list, create *regexp.Regexp, update *regexp.Regexp, updateMethod string, authorized func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !authorized(r) {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		var in comment
		if r.Method != http.MethodGet {
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Body == "" {
				http.Error(w, "want a JSON body with a body field", http.StatusBadRequest)
				return
			}
		}
		switch {
		case r.Method == http.MethodGet && list.MatchString(r.URL.Path):
			out := []comment{{ID: 1, Body: "a person's comment"}}
			for id, b := range c.bodies {
				out = append(out, comment{ID: id, Body: b})
			}
			_ = json.NewEncoder(w).Encode(out)
		case r.Method == http.MethodPost && create.MatchString(r.URL.Path):
			c.next++
			c.bodies[c.next] = in.Body
			c.creates++
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(comment{ID: c.next, Body: in.Body})
		case r.Method == updateMethod && update.MatchString(r.URL.Path):
			id, _ := strconv.Atoi(update.FindStringSubmatch(r.URL.Path)[1])
			if _, ok := c.bodies[id]; !ok {
				http.NotFound(w, r)
				return
			}
			c.bodies[id] = in.Body
			c.updates++
			_ = json.NewEncoder(w).Encode(comment{ID: id, Body: in.Body})
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		}
	})
}

func (c *comments) only(t *testing.T) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bodies) != 1 {
		t.Fatalf("%d comments by the pipeline, want 1: %v", len(c.bodies), c.bodies)
	}
	for _, b := range c.bodies {
		return b
	}
	return ""
}

// fleet is a fleet repo with signed releases of web 1.0.0 and 1.1.0 (by
// keys/release) and 1.2.0 (by a key the fleet does not trust), and a bin
// directory holding the reconciler built from this checkout.
type fleet struct {
	dir, bin string
	env      []string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	root := t.TempDir()
	f := &fleet{dir: filepath.Join(root, "fleet"), bin: filepath.Join(root, "bin")}
	f.env = append(os.Environ(), "PATH="+f.bin+":"+os.Getenv("PATH"), "RECONCILER_PASSWORD=",
		"GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com")
	build := exec.Command("go", "build", "-o", filepath.Join(f.bin, "reconciler"), "../../cmd/reconciler")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build reconciler: %v\n%s", err, out)
	}
	releases := filepath.Join(root, "releases")
	f.run(t, root, "git", "init", "-q", "-b", "main", f.dir)
	f.run(t, root, "mkdir", "-p", filepath.Join(f.dir, "keys"), releases)
	// The fleet repo holds the public key; the private one is elsewhere.
	f.run(t, root, "reconciler", "keygen", "--output-key-prefix", "release")
	f.run(t, root, "reconciler", "keygen", "--output-key-prefix", "other")
	f.run(t, root, "cp", "release.pub", filepath.Join(f.dir, "keys", "release.pub"))
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		build := filepath.Join(root, "build-"+v)
		writeFile(t, filepath.Join(build, "release.json"), fmt.Sprintf(`{"app": "web", "version": %q, "command": ["bin/web"], "listen": [{"name": "http", "network": "tcp", "address": "127.0.0.1:8080"}]}`, v))
		writeFile(t, filepath.Join(build, "bin", "web"), "#!/bin/sh\necho web\n")
		tgz := filepath.Join(releases, "web-"+v+".tar.gz")
		f.run(t, root, "reconciler", "release", "pack", build, "--app", "web", "--version", v, "-o", tgz)
		key := filepath.Join(root, "release.key")
		if v == "1.2.0" {
			key = filepath.Join(root, "other.key")
		}
		f.run(t, root, "reconciler", "sign", "--key", key, tgz)
	}
	f.setVersion(t, "1.0.0", releases)
	f.run(t, f.dir, "git", "add", ".")
	f.run(t, f.dir, "git", "commit", "-q", "-m", "web 1.0.0")
	return f
}

func (f *fleet) setVersion(t *testing.T, v, releases string) {
	t.Helper()
	writeFile(t, filepath.Join(f.dir, "fleet.cue"), fmt.Sprintf(`package fleet

nodes: "node-a": {}
nodes: "node-b": {}

apps: web: {
	version: %q
	artifact: url: "file://%s/web-\(version).tar.gz"
	health: tcp: "127.0.0.1:8080"
}
`, v, releases))
}

// commit moves web to v on a pull-request branch and returns the commit.
func (f *fleet) commit(t *testing.T, v string) string {
	t.Helper()
	releases := filepath.Join(filepath.Dir(f.dir), "releases")
	f.setVersion(t, v, releases)
	f.run(t, f.dir, "git", "commit", "-q", "-am", "web "+v)
	return strings.TrimSpace(f.run(t, f.dir, "git", "rev-parse", "HEAD"))
}

func (f *fleet) run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	if name == "reconciler" {
		name = filepath.Join(f.bin, name)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, f.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shell runs script as a CI runner's bash step does; it returns the
// step's output and whether it succeeded.
func (f *fleet) shell(t *testing.T, script string, env map[string]string) (string, bool) {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = f.dir, f.env
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("bash: %v", err)
		}
	}
	return string(out), err == nil
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// expression matches a GitHub Actions ${{ ... }} expression.
var expression = regexp.MustCompile(`\$\{\{\s*([^}]*?)\s*\}\}`)

type workflow struct {
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			Env  map[string]string `yaml:"env"`
			Run  string            `yaml:"run"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// TestGitHubActions runs the workflow's review, comment and verdict steps
// twice on one pull request: a good change posts one comment and passes;
// a push that names an artifact signed by an untrusted key updates the same
// comment with the failure and fails the job.
func TestGitHubActions(t *testing.T) {
	raw, err := os.ReadFile("github-actions.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(raw, &wf); err != nil {
		t.Fatalf("github-actions.yml: %v", err)
	}
	job, ok := wf.Jobs["review"]
	if !ok {
		t.Fatal("github-actions.yml: no job review")
	}
	f := newFleet(t)
	base := strings.TrimSpace(f.run(t, f.dir, "git", "rev-parse", "HEAD"))
	f.run(t, f.dir, "git", "checkout", "-q", "-b", "web-1.1.0")

	const token = "ghs_test"
	c := &comments{bodies: map[int]string{}, next: 100}
	srv := httptest.NewServer(c.serve(
		regexp.MustCompile(`^/repos/fleetops/fleet/issues/7/comments$`),
		regexp.MustCompile(`^/repos/fleetops/fleet/issues/7/comments$`),
		regexp.MustCompile(`^/repos/fleetops/fleet/issues/comments/(\d+)$`), http.MethodPatch,
		func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token }))
	defer srv.Close()

	runJob := func(head string) (string, bool) {
		t.Helper()
		output := filepath.Join(t.TempDir(), "output")
		context := map[string]string{
			"github.event.pull_request.base.sha": base,
			"github.event.pull_request.head.sha": head,
			"github.event.pull_request.number":   "7",
			"github.token":                       token,
		}
		outputs := map[string]string{}
		var log strings.Builder
		for _, step := range job.Steps {
			if step.Uses != "" || step.Name == "install" {
				continue // checkout and setup-go: the test is the checkout; install: built above
			}
			env := map[string]string{"GITHUB_API_URL": srv.URL, "GITHUB_REPOSITORY": "fleetops/fleet", "GITHUB_OUTPUT": output}
			for k, v := range job.Env {
				env[k] = v
			}
			for k, v := range step.Env {
				env[k] = expression.ReplaceAllStringFunc(v, func(e string) string {
					name := expression.FindStringSubmatch(e)[1]
					if v, ok := context[name]; ok {
						return v
					}
					if v, ok := outputs[name]; ok {
						return v
					}
					t.Fatalf("step %s: expression %s unknown to the test", step.Name, e)
					return ""
				})
			}
			out, ok := f.shell(t, step.Run, env)
			log.WriteString(out)
			if !ok {
				return log.String(), false
			}
			if b, err := os.ReadFile(output); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if k, v, ok := strings.Cut(line, "="); ok {
						outputs["steps."+step.Name+".outputs."+k] = v
					}
				}
			}
		}
		return log.String(), true
	}

	head := f.commit(t, "1.1.0")
	if out, ok := runJob(head); !ok {
		t.Fatalf("the job failed on a good change:\n%s", out)
	}
	body := c.only(t)
	for _, want := range []string{marker, "### reconciler diff", "| `web` | upgrade 1.0.0 → 1.1.0 |", "| `web` | 1.1.0 | ok: signed by release.pub"} {
		if !strings.Contains(body, want) {
			t.Errorf("comment lacks %q:\n%s", want, body)
		}
	}

	head = f.commit(t, "1.2.0")
	out, ok := runJob(head)
	if ok {
		t.Fatalf("the job passed with an artifact signed by an untrusted key:\n%s", out)
	}
	body = c.only(t)
	if !strings.Contains(body, "FAILED") || !strings.Contains(body, "1.2.0") {
		t.Errorf("updated comment does not say the verification failed:\n%s", body)
	}
	if c.creates != 1 || c.updates != 1 {
		t.Errorf("comment created %d and updated %d times, want 1 and 1", c.creates, c.updates)
	}
}

// TestGitLabCI runs the job's script twice on one merge request, as
// TestGitHubActions does the workflow.
func TestGitLabCI(t *testing.T) {
	raw, err := os.ReadFile("gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var jobs map[string]struct {
		Variables map[string]any `yaml:"variables"`
		Script    []string       `yaml:"script"`
	}
	if err := yaml.Unmarshal(raw, &jobs); err != nil {
		t.Fatalf("gitlab-ci.yml: %v", err)
	}
	job, ok := jobs["reconciler"]
	if !ok || len(job.Script) == 0 {
		t.Fatal("gitlab-ci.yml: no job reconciler with a script")
	}
	f := newFleet(t)
	base := strings.TrimSpace(f.run(t, f.dir, "git", "rev-parse", "HEAD"))
	f.run(t, f.dir, "git", "checkout", "-q", "-b", "web-1.1.0")

	const token = "glpat-test"
	c := &comments{bodies: map[int]string{}, next: 100}
	notes := regexp.MustCompile(`^/api/v4/projects/42/merge_requests/7/notes$`)
	srv := httptest.NewServer(c.serve(notes, notes,
		regexp.MustCompile(`^/api/v4/projects/42/merge_requests/7/notes/(\d+)$`), http.MethodPut,
		func(r *http.Request) bool { return r.Header.Get("PRIVATE-TOKEN") == token }))
	defer srv.Close()

	runJob := func(head string) (string, bool) {
		env := map[string]string{
			"CI_MERGE_REQUEST_DIFF_BASE_SHA": base, "CI_COMMIT_SHA": head,
			"CI_API_V4_URL": srv.URL + "/api/v4", "CI_PROJECT_ID": "42", "CI_MERGE_REQUEST_IID": "7",
			"GITLAB_API_TOKEN": token,
		}
		for k, v := range job.Variables {
			env[k] = fmt.Sprint(v)
		}
		return f.shell(t, strings.Join(job.Script, "\n"), env)
	}

	if out, ok := runJob(f.commit(t, "1.1.0")); !ok {
		t.Fatalf("the job failed on a good change:\n%s", out)
	}
	if body := c.only(t); !strings.Contains(body, marker) || !strings.Contains(body, "upgrade 1.0.0 → 1.1.0") {
		t.Errorf("note lacks the marker or the change:\n%s", body)
	}
	if out, ok := runJob(f.commit(t, "1.2.0")); ok {
		t.Fatalf("the job passed with an artifact signed by an untrusted key:\n%s", out)
	}
	if body := c.only(t); !strings.Contains(body, "FAILED") {
		t.Errorf("updated note does not say the verification failed:\n%s", body)
	}
	if c.creates != 1 || c.updates != 1 {
		t.Errorf("note created %d and updated %d times, want 1 and 1", c.creates, c.updates)
	}
}
