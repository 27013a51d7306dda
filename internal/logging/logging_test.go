package logging

import (
	"bytes"
	"encoding/json"
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
