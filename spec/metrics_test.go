package spec

import (
	"strings"
	"testing"
	"time"
)

// metricApp is an app of the header's template with the health fields h.
func metricApp(h string) string {
	return header + "apps: x: {version: \"1.0.0\", health: {http: \"http://h/x\"\n" + h + "\n}}\n"
}

// TestMetricGates: health.metrics decode with their defaults, and each
// mistake is reported at the file:line:col where it was written.
func TestMetricGates(t *testing.T) {
	f, err := LoadFiles(map[string][]byte{"f.cue": []byte(metricApp(`prometheus: "http://127.0.0.1:9090"
metrics: [{name: "errors", query: "rate(http_requests_total{node=\"${NODE}\",code=~\"5..\"}[1m])", max: 0.05},
	{name: "rps", query: "sum(rate(http_requests_total[1m]))", min: 1, max: 1e4, for: "2m", interval: "5s"}]`))})
	if err != nil {
		t.Fatal(err)
	}
	h := f.Apps["x"].Health
	if h.Prometheus != "http://127.0.0.1:9090" || len(h.Metrics) != 2 {
		t.Fatalf("health = %+v", h)
	}
	m0, m1 := h.Metrics[0], h.Metrics[1]
	if m0.Max == nil || *m0.Max != 0.05 || m0.Min != nil || m0.For.Duration != DefaultMetricFor || m0.Interval.Duration != DefaultMetricInterval {
		t.Errorf("metric 0 = %+v, want max 0.05 and the default for and interval", m0)
	}
	if *m1.Min != 1 || *m1.Max != 1e4 || m1.For.Duration != 2*time.Minute || m1.Interval.Duration != 5*time.Second || m1.Bounds() != ">= 1 and <= 10000" {
		t.Errorf("metric 1 = %+v (%s)", m1, m1.Bounds())
	}
	if !strings.Contains(m0.Query, `node="${NODE}"`) {
		t.Errorf("query = %q, want ${NODE} kept for the agent", m0.Query)
	}

	tests := []struct {
		name, health string
		want         []string
	}{
		{"no bound", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up"}]`, []string{
			`f.cue:13:40: apps.x.health.metrics[0]: no bound, want max, min or both (the values the query may return)`}},
		{"bad for", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up", max: 1, for: "1 minute"}]`, []string{
			`f.cue:13:78: apps.x.health.metrics[0].for: got "1 minute", want a positive Go duration such as "1m": how long after a node's switch the query is watched`}},
		{"zero interval", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up", min: 1, interval: "0s"}]`, []string{
			`f.cue:13:83: apps.x.health.metrics[0].interval: got "0s", want a positive Go duration such as "15s": how often the query is asked`}},
		{"not http", `prometheus: "ftp://p:9090", metrics: [{name: "e", query: "up", max: 1}]`, []string{
			`f.cue:13:13: apps.x.health.prometheus: got "ftp://p:9090", want the http:// or https:// URL of a Prometheus server, such as "http://prometheus.example.com:9090"`}},
		{"no host", `prometheus: "http://", metrics: [{name: "e", query: "up", max: 1}]`, []string{
			`f.cue:13:13: apps.x.health.prometheus: got "http://", want the http:// or https:// URL of a Prometheus server, such as "http://prometheus.example.com:9090"`}},
		{"no prometheus", `metrics: [{name: "e", query: "up", max: 1}]`, []string{
			`f.cue:13:10: apps.x.health.metrics: metric gates without apps.x.health.prometheus, want the URL of the Prometheus server their queries go to, such as "http://prometheus.example.com:9090"`}},
		{"min above max", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up", min: 2, max: 1}]`, []string{
			`f.cue:13:70: apps.x.health.metrics[0]: min 2 above max 1, want min <= max: no value could pass`}},
		{"twice the name", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up", max: 1}, {name: "e", query: "up", max: 2}]`, []string{
			`f.cue:13:81: apps.x.health.metrics[1].name: got "e" again, want a name unique among the app's metrics (it names the gate in failure reasons)`}},
		{"misspelled field", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up", maximum: 1}]`, []string{
			`f.cue:13:40: apps.x.health.metrics[0]: no bound, want max, min or both (the values the query may return)`,
			`f.cue:13:65: apps.x.health.metrics[0].maximum: unknown field "maximum", want one of for, interval, max, min, name, query`}},
		{"empty query", `prometheus: "http://p:9090", metrics: [{name: "e", query: " ", max: 1}]`, []string{
			`f.cue:13:59: apps.x.health.metrics[0].query: got " ", want a non-empty PromQL query, such as "sum(rate(http_requests_total{code=~'5..'}[1m]))"`}},
		{"bound not a number", `prometheus: "http://p:9090", metrics: [{name: "e", query: "up", max: "5%"}]`, []string{
			`f.cue:13:70: apps.x.health.metrics[0].max: got "5%", want a number: the highest value the query may return`}},
		{"not a list", `prometheus: "http://p:9090", metrics: {name: "e"}`, []string{
			`f.cue:13:39: apps.x.health.metrics: got { name: "e" }, want a list of metric gates, each {name, query, max and/or min, for, interval}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadErrors(t, map[string]string{"f.cue": metricApp(tt.health)})
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
