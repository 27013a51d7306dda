package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// metricName matches the metric names a PromQL expression of the example
// dashboard uses: the agent's own, its process's and the Go runtime's.
var metricName = regexp.MustCompile(`\b(?:reconciler|process|go)_[a-z0-9_]+\b`)

// checkMetrics reads a live agent's /metrics, has promtool lint it, and
// checks that every metric examples/grafana/reconciler.json queries is one
// the agent exports: a renamed metric breaks this test, not a dashboard.
func checkMetrics(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}

	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = bytes.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics (Debian package prometheus; make deps installs it): %v\n%s", err, out)
	}

	exported := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			exported[line[:i]] = true
		}
	}
	raw, err := os.ReadFile("../../examples/grafana/reconciler.json")
	if err != nil {
		t.Fatal(err)
	}
	var dashboard any
	if err := json.Unmarshal(raw, &dashboard); err != nil {
		t.Fatalf("examples/grafana/reconciler.json: %v", err)
	}
	used := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "query") {
					for _, m := range metricName.FindAllString(s, -1) {
						used[m] = true
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(dashboard)
	if len(used) < 10 {
		t.Fatalf("the dashboard queries %d metrics; the walk missed its expressions", len(used))
	}
	var missing []string
	for m := range used {
		if !exported[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("examples/grafana/reconciler.json queries metrics the agent does not export: %s", strings.Join(missing, ", "))
	}
}
