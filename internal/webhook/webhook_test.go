package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const secret = "It's a Secret to Everybody"

func hmacHex(body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// hook is one provider's delivery of a fixture, signed as the host signs.
type hook struct {
	name, file, branch string
	headers            func(body []byte) map[string]string
	event              map[string]string // the event header for a non-push event
}

var hooks = []hook{
	{name: "github", file: "github-push.json", branch: "main",
		headers: func(b []byte) map[string]string {
			return map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-Hub-Signature-256": "sha256=" + hmacHex(b)}
		},
		event: map[string]string{"X-GitHub-Event": "issues"}},
	{name: "gitlab", file: "gitlab-push.json", branch: "main",
		headers: func([]byte) map[string]string {
			return map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}
		},
		event: map[string]string{"X-Gitlab-Event": "Merge Request Hook"}},
	{name: "gitea", file: "gitea-push.json", branch: "develop",
		headers: func(b []byte) map[string]string {
			// Gitea sends GitHub's and Gogs' headers too.
			return map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gogs-Event": "push",
				"X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473", "X-Gitea-Signature": hmacHex(b)}
		},
		event: map[string]string{"X-Gitea-Event": "issues", "X-GitHub-Event": "issues"}},
	{name: "bitbucket", file: "bitbucket-push.json", branch: "master",
		headers: func(b []byte) map[string]string {
			return map[string]string{"X-Event-Key": "repo:push", "X-Hook-UUID": "{0b1f1a43-3b53-4c4a-9a3c-8b3b8c2d2f00}", "X-Hub-Signature": "sha256=" + hmacHex(b)}
		},
		event: map[string]string{"X-Event-Key": "pullrequest:created"}},
}

// serve starts a Receiver for branch over loopback HTTP; it returns its
// URL and the count of wakes.
func serve(t *testing.T, branch string, maxBody int64) (string, *atomic.Int32) {
	t.Helper()
	r, err := New(Options{Listen: "127.0.0.1:0", Secret: []byte(secret), Branch: branch, MaxBody: maxBody})
	if err != nil {
		t.Fatal(err)
	}
	var wakes atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, func() { wakes.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return "http://" + r.Addr() + "/", &wakes
}

func post(t *testing.T, url string, body []byte, headers map[string]string) (int, answer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, a
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProviders: each provider's push payload, signed as the host signs
// it, wakes the agent for the tracked branch and is ignored (2xx) for
// another; a bad or missing signature is 401 and wakes nothing; a non-push
// event is ignored.
func TestProviders(t *testing.T) {
	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			body := fixture(t, h.file)
			url, wakes := serve(t, h.branch, 0)
			if code, a := post(t, url, body, h.headers(body)); code != http.StatusAccepted || a.Result != "woken" || a.Provider != h.name {
				t.Fatalf("push to %s: %d %+v, want 202 woken by %s", h.branch, code, a, h.name)
			}
			if n := wakes.Load(); n != 1 {
				t.Fatalf("%d wakes after one push, want 1", n)
			}

			tampered := bytes.Replace(body, []byte(`"ref"`), []byte(`"ref" `), 1)
			if h.name == "bitbucket" {
				tampered = bytes.Replace(body, []byte(`"forced"`), []byte(`"forced" `), 1)
			}
			hdr := h.headers(body) // signed over the original body
			if h.name == "gitlab" {
				hdr["X-Gitlab-Token"] = secret + "x"
				tampered = body
			}
			if code, a := post(t, url, tampered, hdr); code != http.StatusUnauthorized || a.Error == "" {
				t.Fatalf("bad signature: %d %+v, want 401", code, a)
			}
			missing := h.headers(body)
			for _, k := range []string{"X-Hub-Signature-256", "X-Hub-Signature", "X-Gitea-Signature", "X-Gitlab-Token"} {
				delete(missing, k)
			}
			if code, _ := post(t, url, body, missing); code != http.StatusUnauthorized {
				t.Fatalf("no signature: %d, want 401", code)
			}
			ev := h.headers(body)
			for k, v := range h.event {
				ev[k] = v
			}
			if code, a := post(t, url, body, ev); code != http.StatusOK || a.Result != "ignored" || !strings.Contains(a.Reason, "not a push") {
				t.Fatalf("non-push event: %d %+v, want 200 ignored", code, a)
			}
			if n := wakes.Load(); n != 1 {
				t.Fatalf("%d wakes after refused and ignored hooks, want still 1", n)
			}

			other, otherWakes := serve(t, "release", 0)
			if code, a := post(t, other, body, h.headers(body)); code != http.StatusOK || a.Result != "ignored" || !strings.Contains(a.Reason, "not the tracked branch release") {
				t.Fatalf("push to another branch: %d %+v, want 200 ignored", code, a)
			}
			if otherWakes.Load() != 0 {
				t.Fatal("a push to another branch woke the agent")
			}
		})
	}
}

// TestGitHubTestVector: the signature GitHub's documentation gives for
// its example secret and payload verifies.
func TestGitHubTestVector(t *testing.T) {
	h := http.Header{}
	h.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	if err := github.authenticate(h, []byte("Hello, World!"), []byte(secret)); err != nil {
		t.Fatal(err)
	}
}

// TestPingTagsAndLimits: GitHub's ping is ignored, a tag push wakes
// nothing, a body over the bound is 413, a GET is 405, an unknown sender
// 401.
func TestPingTagsAndLimits(t *testing.T) {
	url, wakes := serve(t, "main", 1024)
	ping := fixture(t, "github-ping.json")
	if code, a := post(t, url, ping, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + hmacHex(ping)}); code != http.StatusOK || a.Result != "ignored" {
		t.Fatalf("ping: %d %+v", code, a)
	}
	tag := []byte(`{"ref":"refs/tags/v1.0.0","after":"0000000000000000000000000000000000000001"}`)
	if code, a := post(t, url, tag, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hmacHex(tag)}); code != http.StatusOK || a.Result != "ignored" {
		t.Fatalf("tag push: %d %+v", code, a)
	}
	big := fixture(t, "github-push.json") // over 1024 bytes
	if code, _ := post(t, url, big, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hmacHex(big)}); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("big body: %d, want 413", code)
	}
	if code, _ := post(t, url, tag, nil); code != http.StatusUnauthorized {
		t.Fatalf("no provider headers: %d, want 401", code)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
	if wakes.Load() != 0 {
		t.Fatal("woken by a ping, a tag or a refused hook")
	}
}
