// Package gittest gives tests real Git repositories and a real Git server:
// bare repositories made with the git CLI, served over loopback HTTP by
// `git http-backend` (through net/http/cgi) with pushes enabled, and helpers
// to push commits as a person would. Compare-and-swap tests must use these
// (or a local path, which go-git reaches through git-receive-pack), never
// go-git's in-process server, which does not compare old values.
//
// Every git command runs with GIT_CONFIG_GLOBAL=/dev/null, no system config
// and an explicit identity, so the developer's configuration never leaks in.
package gittest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Identity of commits made by these helpers.
const (
	Name  = "Test Person"
	Email = "person@example.com"
)

// Env is the environment every git command of this package runs with.
func Env() []string {
	env := []string{
		"GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=" + Name, "GIT_AUTHOR_EMAIL=" + Email,
		"GIT_COMMITTER_NAME=" + Name, "GIT_COMMITTER_EMAIL=" + Email,
		"GIT_TERMINAL_PROMPT=0",
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return env
}

// Git runs git with args in dir and returns its trimmed stdout; it fails
// the test on error, showing stderr.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := RunGit(dir, args...)
	if err != nil {
		t.Fatalf("git %s (in %s): %v", strings.Join(args, " "), dir, err)
	}
	return out
}

// RunGit is Git for use off the test goroutine: it returns the error.
func RunGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &gitError{args: args, err: err, stderr: stderr.String()}
	}
	return strings.TrimSpace(stdout.String()), nil
}

type gitError struct {
	args   []string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	return "git " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + strings.TrimSpace(e.stderr)
}

// NewBare creates a bare repository in a temporary directory whose main
// branch has one commit holding files (path → content; nil or empty makes
// a commit with a README). It returns the repository's path.
func NewBare(t testing.TB, files map[string]string) string {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "fleet.git")
	Git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", bare)
	if len(files) == 0 {
		files = map[string]string{"README.md": "fleet\n"}
	}
	PushFiles(t, bare, "main", files, "initial commit")
	return bare
}

// PushFiles commits files (path → content, written over what the branch
// has; an empty content deletes the file) on top of branch in the
// repository at url (a path or URL), pushes it as a person would with
// `git push`, and returns the new commit id. The branch is created when missing.
func PushFiles(t testing.TB, url, branch string, files map[string]string, message string) string {
	t.Helper()
	work := Clone(t, url, branch)
	Commit(t, work, files, message)
	Git(t, work, "push", "--quiet", "origin", "HEAD:refs/heads/"+branch)
	return Git(t, work, "rev-parse", "HEAD")
}

// Clone clones url into a temporary worktree checked out at branch (an
// empty worktree tracking url when the branch does not exist) and returns it.
func Clone(t testing.TB, url, branch string) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	Git(t, "", "clone", "--quiet", url, work)
	if _, err := RunGit(work, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/"+branch); err == nil {
		Git(t, work, "checkout", "--quiet", "-B", branch, "refs/remotes/origin/"+branch)
	} else {
		Git(t, work, "checkout", "--quiet", "--orphan", branch)
	}
	return work
}

// Commit writes files into the worktree and commits them all; it returns
// the commit id. An empty content deletes the file.
func Commit(t testing.TB, work string, files map[string]string, message string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(work, filepath.FromSlash(name))
		if files[name] == "" {
			os.Remove(path)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, work, "add", "--all")
	Git(t, work, "commit", "--quiet", "--allow-empty", "-m", message)
	return Git(t, work, "rev-parse", "HEAD")
}

// ForcePush moves branch of the repository at url to commit (which must be
// in the repository), as `git push --force` would.
func ForcePush(t testing.TB, url, branch, commit string) {
	t.Helper()
	work := Clone(t, url, branch)
	Git(t, work, "push", "--quiet", "--force", "origin", commit+":refs/heads/"+branch)
}

// RevParse returns the commit id of rev in the repository at dir.
func RevParse(t testing.TB, dir, rev string) string {
	t.Helper()
	return Git(t, dir, "rev-parse", rev)
}

// Deadline is how long Eventually waits by default.
const Deadline = 10 * time.Second

// Eventually polls cond until it returns true or the deadline passes, and
// fails the test with msg then. It never sleeps longer than 5ms at a time.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
