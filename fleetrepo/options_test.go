package fleetrepo

import (
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport/http"
)

func TestAuthFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	auth, err := AuthFromEnv("https://git.example.com/fleet.git", env(map[string]string{"RECONCILER_GIT_TOKEN": "tok"}))
	if b, ok := auth.(*http.BasicAuth); err != nil || !ok || b.Username != "git" || b.Password != "tok" {
		t.Errorf("token: %#v, %v", auth, err)
	}
	auth, err = AuthFromEnv("http://git.example.com/fleet.git", env(map[string]string{
		"RECONCILER_GIT_USERNAME": "ada", "RECONCILER_GIT_PASSWORD": "pw"}))
	if b, ok := auth.(*http.BasicAuth); err != nil || !ok || b.Username != "ada" || b.Password != "pw" {
		t.Errorf("basic: %#v, %v", auth, err)
	}
	if auth, err := AuthFromEnv("https://git.example.com/fleet.git", env(nil)); auth != nil || err != nil {
		t.Errorf("anonymous: %#v, %v", auth, err)
	}
	if auth, err := AuthFromEnv("/srv/fleet.git", env(map[string]string{"RECONCILER_GIT_TOKEN": "tok"})); auth != nil || err != nil {
		t.Errorf("local path: %#v, %v", auth, err)
	}
	if _, err := AuthFromEnv("ssh://git@git.example.com/fleet.git", env(nil)); err == nil {
		t.Error("ssh without key or agent: no error")
	}
	if _, err := AuthFromEnv("git@git.example.com:fleet.git", env(map[string]string{"RECONCILER_GIT_SSH_KEY": "/nonexistent"})); err == nil {
		t.Error("ssh with a missing key file: no error")
	}
}

func TestNormalizeURL(t *testing.T) {
	for _, tt := range []struct{ in, dial, gitDir string }{
		{"file:///srv/fleet.git", "/srv/fleet.git", "/srv/fleet.git"},
		{"/srv/fleet.git", "/srv/fleet.git", "/srv/fleet.git"},
		{"https://h/fleet.git", "https://h/fleet.git", ""},
		{"git@h:fleet.git", "git@h:fleet.git", ""},
	} {
		dial, gitDir, err := normalizeURL(tt.in)
		if err != nil || dial != tt.dial || gitDir != tt.gitDir {
			t.Errorf("normalizeURL(%q) = %q, %q, %v; want %q, %q", tt.in, dial, gitDir, err, tt.dial, tt.gitDir)
		}
	}
}
