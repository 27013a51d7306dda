package scale

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/internal/webhook"
)

// hookSecret signs the harness's webhook calls (loopback only, one run).
const hookSecret = "reconciler-scale"

// hook starts node's webhook receiver when it is one of the first
// Options.Webhooks nodes, returning it as the agent's Waker (nil: none).
func (h *harness) hook(i int) (agent.Watcher, error) {
	if i >= h.opt.Webhooks {
		return nil, nil
	}
	r, err := webhook.New(webhook.Options{Listen: "127.0.0.1:0", Secret: []byte(hookSecret), Branch: "main"})
	if err != nil {
		return nil, err
	}
	h.hooks = append(h.hooks, "http://"+r.Addr()+"/")
	return r, nil
}

// callHooks tells every webhook receiver of a push to main, as a Git host
// does after a push: a GitHub push event signed with the shared secret.
// An agent that is not answering is the finding, not the harness's error:
// it is said, and the run goes on.
func (h *harness) callHooks(ctx context.Context) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for _, url := range h.hooks {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := postHook(rctx, url, body, sig)
		cancel()
		if err != nil {
			h.say("webhook %s: %v", url, err)
		}
	}
}

func postHook(ctx context.Context, url string, body []byte, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)) // for the message only
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("%s: %s", resp.Status, answer)
	}
	return nil
}
