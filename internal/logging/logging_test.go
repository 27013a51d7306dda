package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// keysOf decodes one JSON line token by token, so duplicate keys are seen
// (json.Unmarshal would keep only the last).
func keysOf(t *testing.T, line string) map[string][]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	out := map[string][]any{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out[k.(string)] = append(out[k.(string)], v)
	}
	return out
}

func TestOneNodeKeyPerLine(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, FormatJSON).With("node", "n1")
	log.With("node", "n1").Info("same value again")           // the agent's own With
	log.Info("rollout event", "event", "started", "node", "") // an event about no node
	log.Info("rollout event", "event", "node_done", "node", "n2")
	log.With("node", "n3").Info("other value via With", "node", "n4")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []map[string]any{
		{"node": "n1"},
		{"node": "n1"},
		{"node": "n1", "node_2": "n2"},
		{"node": "n1", "node_2": "n3", "node_3": "n4"},
	}
	for i, line := range lines {
		keys := keysOf(t, line)
		for k, vs := range keys {
			if len(vs) > 1 {
				t.Errorf("line %d has %q %d times: %s", i, k, len(vs), line)
			}
		}
		for k, v := range want[i] {
			if got := keys[k]; len(got) != 1 || got[0] != v {
				t.Errorf("line %d: %s = %v, want %v: %s", i, k, got, v, line)
			}
		}
	}
}

func TestDurationsAreReadable(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, FormatJSON).With("ttl", 20*time.Second).Info("switched", "took", 196*time.Millisecond+123456*time.Nanosecond,
		"fast", 1500*time.Nanosecond)
	keys := keysOf(t, buf.String())
	for k, want := range map[string]string{"took": "196ms", "ttl": "20s", "fast": "2µs"} {
		if got := keys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, want %q: %s", k, got, want, buf.String())
		}
	}
	buf.Reset()
	New(&buf, FormatText).Info("switched", "took", 1234567*time.Microsecond)
	if !strings.Contains(buf.String(), "took=1.235s") {
		t.Errorf("text line: %s", buf.String())
	}
}

func TestGroupsPassThrough(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, FormatJSON).With("node", "n1").WithGroup("req").Info("x", "node", "n2")
	keys := keysOf(t, buf.String())
	if g, ok := keys["req"][0].(map[string]any); !ok || g["node"] != "n2" || keys["node"][0] != "n1" {
		t.Fatalf("grouped attributes: %s", buf.String())
	}
}

// TestNoSecrets: whatever carries a URL (message, string, error, With,
// group, slice), its credentials never reach the line, in either format.
func TestNoSecrets(t *testing.T) {
	for _, format := range []string{FormatJSON, FormatText} {
		var buf bytes.Buffer
		log := New(&buf, format).With("repo", "https://u:hunter2@git.example/r.git")
		log.Info("fetch https://h/a.tgz?token=tok1 failed",
			"url", "https://tok2@h/a.tgz",
			"err", errors.New(`Get "https://h/a?X-Amz-Signature=tok3": EOF`),
			"urls", []string{"https://h/b?sig=tok4"},
			slog.Group("g", "u", "https://h/c?password=tok5"))
		out := buf.String()
		for _, secret := range []string{"hunter2", "tok1", "tok2", "tok3", "tok4", "tok5"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s: %q leaked:\n%s", format, secret, out)
			}
		}
		if !strings.Contains(out, "git.example") || !strings.Contains(out, "REDACTED") {
			t.Errorf("%s: want the URLs kept, redacted:\n%s", format, out)
		}
	}
}
