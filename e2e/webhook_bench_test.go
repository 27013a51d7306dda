package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkPushToFirstNode measures, over git http-backend with 3 real
// agents (--poll 30s, the tracked branch's HTTP poll at its 10 s default),
// the time from a push to the first node beginning its switch:
//
//   - poll: the agents learn of the push by polling the branch;
//   - webhook: each agent has --webhook-listen, and right after the push
//     the test POSTs GitHub's push webhook (X-Hub-Signature-256) to each,
//     as a Git host with one hook per agent does.
//
// Run: go test -run '^$' -bench BenchmarkPushToFirstNode -benchtime 5x ./e2e/
func BenchmarkPushToFirstNode(b *testing.B) {
	for _, mode := range []string{"poll", "webhook"} {
		b.Run(mode, func(b *testing.B) {
			key := filepath.Join(b.TempDir(), "webhook.key")
			if err := os.WriteFile(key, []byte("bench-secret\n"), 0o600); err != nil {
				b.Fatal(err)
			}
			flags := []string{"--poll", "30s"}
			if mode == "webhook" {
				flags = append(flags, "--webhook-listen", "127.0.0.1:0", "--webhook-secret-file", key)
			}
			f := newFleet(b, 3, flags...)
			var hooks []string
			if mode == "webhook" {
				hooks = webhookAddrs(b, f)
			}
			versions := []string{"1.1.0", "1.0.0"}
			var first, slowest time.Duration
			for i := 0; i < b.N; i++ {
				v := versions[i%2]
				f.settle()
				pushed := time.Now()
				commit := f.push(specOptions{version: v, rollout: `strategy: "rolling", batchSize: 3`}, "web "+v)
				for _, h := range hooks {
					postPushHook(b, h, commit, []byte("bench-secret"))
				}
				f.waitAll(v, 2*time.Minute)
				d := firstSwitch(b, f, v, pushed)
				first += d
				slowest = max(slowest, d)
			}
			b.ReportMetric(float64((first / time.Duration(b.N)).Milliseconds()), "ms-push-to-first-switch")
			b.ReportMetric(float64(slowest.Milliseconds()), "ms-max-push-to-first-switch")
		})
	}
}

// webhookAddrs reads each agent's webhook address from its log.
func webhookAddrs(b testing.TB, f *fleet) []string {
	var out []string
	for _, a := range f.agents {
		addr := ""
		scanLog(b, a.Log, func(_ time.Time, line string) {
			if strings.Contains(line, `msg="push webhooks on"`) {
				for _, kv := range strings.Fields(line) {
					if v, ok := strings.CutPrefix(kv, "addr="); ok {
						addr = v
					}
				}
			}
		})
		if addr == "" {
			b.Fatalf("%s logged no webhook address", a.Name)
		}
		out = append(out, "http://"+addr+"/")
	}
	return out
}

// postPushHook sends GitHub's push webhook for commit on main.
func postPushHook(b testing.TB, url, commit string, secret []byte) {
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","before":"%s","after":"%s","repository":{"full_name":"ops/fleet"}}`,
		strings.Repeat("0", 39)+"1", commit))
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("webhook %s: %s", url, resp.Status)
	}
}

// firstSwitch is how long after pushed the first node began switching to v.
func firstSwitch(b *testing.B, f *fleet, v string, pushed time.Time) time.Duration {
	first := time.Duration(-1)
	for _, a := range f.agents {
		scanLog(b, a.Log, func(at time.Time, line string) {
			if at.After(pushed) && strings.Contains(line, `msg="upgrading under lease"`) && strings.Contains(line, "version="+v) {
				if d := at.Sub(pushed); first < 0 || d < first {
					first = d
				}
			}
		})
	}
	if first < 0 {
		b.Fatalf("no node logged a switch to %s", v)
	}
	return first
}

// TestWebhookWakesAgent: an agent with --webhook-listen logs the wake of a
// signed GitHub push webhook for its branch and converges to the push.
func TestWebhookWakesAgent(t *testing.T) {
	key := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(key, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t, 1, "--poll", "30s", "--webhook-listen", "127.0.0.1:0", "--webhook-secret-file", key)
	hooks := webhookAddrs(t, f)
	commit := f.push(specOptions{version: "1.1.0", rollout: `strategy: "all_at_once"`}, "web 1.1.0")
	postPushHook(t, hooks[0], commit, []byte("s3cret"))
	f.waitAll("1.1.0", time.Minute)
	woken := false
	scanLog(t, f.agents[0].Log, func(_ time.Time, line string) {
		woken = woken || strings.Contains(line, `msg="push webhook: waking the agent"`)
	})
	if !woken {
		t.Fatal("the agent did not log the webhook's wake")
	}
}
