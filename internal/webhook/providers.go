package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// provider is one Git host's webhook dialect.
type provider struct {
	name string
	// eventHeader names the event ("push", "Push Hook", "repo:push").
	eventHeader, pushEvent string
	authenticate           func(h http.Header, body, secret []byte) error
	// branches lists the branches a push event moved.
	branches func(body []byte) ([]string, error)
}

var errNoSignature = errors.New("no signature header")

// identify picks the provider by its event header. Gitea sends GitHub's
// headers as well as its own: it is checked first.
func identify(h http.Header) (provider, error) {
	switch {
	case h.Get("X-Gitea-Event") != "":
		return gitea, nil
	case h.Get("X-Gitlab-Event") != "":
		return gitlab, nil
	case h.Get("X-Event-Key") != "":
		return bitbucket, nil
	case h.Get("X-GitHub-Event") != "":
		return github, nil
	}
	return provider{}, errors.New("not a GitHub, GitLab, Gitea or Bitbucket webhook (no X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event or X-Event-Key header)")
}

// pushed returns the branches a push moved, or why the event is ignored.
func (p provider) pushed(h http.Header, body []byte) (branches []string, ignored string, err error) {
	if ev := h.Get(p.eventHeader); ev != p.pushEvent {
		return nil, fmt.Sprintf("%s event %q, not a push", p.name, ev), nil
	}
	b, err := p.branches(body)
	if err != nil {
		return nil, "", fmt.Errorf("%s push: %w", p.name, err)
	}
	if len(b) == 0 {
		return nil, "push moved no branch (a tag, or a deletion)", nil
	}
	return b, "", nil
}

// hubSignature checks "sha256=<hex>" in header (GitHub, Bitbucket Cloud).
func hubSignature(header string) func(h http.Header, body, secret []byte) error {
	return func(h http.Header, body, secret []byte) error {
		v := h.Get(header)
		if v == "" {
			return fmt.Errorf("%w %s (set the webhook's secret on the Git host)", errNoSignature, header)
		}
		hexSig, ok := strings.CutPrefix(v, "sha256=")
		if !ok || !validHMAC(secret, body, hexSig) {
			return fmt.Errorf("%s does not match the body under --webhook-secret-file", header)
		}
		return nil
	}
}

// refBranch is the branch of a "refs/heads/<b>" ref, "" for anything else.
func refBranch(ref string) []string {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok && b != "" {
		return []string{b}
	}
	return nil
}

// refPush reads {"ref": "refs/heads/main", "after": ...}: the push payload
// of GitHub, GitLab and Gitea. A deleted branch (after all zeros) moved
// nowhere to deploy.
func refPush(body []byte) ([]string, error) {
	var p struct {
		Ref   string `json:"ref"`
		After string `json:"after"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, err
	}
	if strings.Trim(p.After, "0") == "" && p.After != "" {
		return nil, nil
	}
	return refBranch(p.Ref), nil
}

var github = provider{
	name: "github", eventHeader: "X-GitHub-Event", pushEvent: "push",
	authenticate: hubSignature("X-Hub-Signature-256"), branches: refPush,
}

var gitea = provider{
	name: "gitea", eventHeader: "X-Gitea-Event", pushEvent: "push",
	authenticate: func(h http.Header, body, secret []byte) error {
		v := h.Get("X-Gitea-Signature")
		if v == "" {
			return fmt.Errorf("%w X-Gitea-Signature (set the webhook's secret in Gitea)", errNoSignature)
		}
		if !validHMAC(secret, body, v) {
			return errors.New("X-Gitea-Signature does not match the body under --webhook-secret-file")
		}
		return nil
	},
	branches: refPush,
}

var gitlab = provider{
	name: "gitlab", eventHeader: "X-Gitlab-Event", pushEvent: "Push Hook",
	authenticate: func(h http.Header, _, secret []byte) error {
		v := h.Get("X-Gitlab-Token")
		if v == "" {
			return fmt.Errorf("%w X-Gitlab-Token (set the webhook's secret token in GitLab)", errNoSignature)
		}
		if !sameToken(secret, v) {
			return errors.New("X-Gitlab-Token is not the secret of --webhook-secret-file")
		}
		return nil
	},
	branches: refPush,
}

var bitbucket = provider{
	name: "bitbucket", eventHeader: "X-Event-Key", pushEvent: "repo:push",
	authenticate: hubSignature("X-Hub-Signature"),
	branches: func(body []byte) ([]string, error) {
		var p struct {
			Push struct {
				Changes []struct {
					New *struct {
						Type string `json:"type"`
						Name string `json:"name"`
					} `json:"new"`
				} `json:"changes"`
			} `json:"push"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, err
		}
		var out []string
		for _, c := range p.Push.Changes {
			if c.New != nil && c.New.Type == "branch" && c.New.Name != "" {
				out = append(out, c.New.Name)
			}
		}
		return out, nil
	},
}
