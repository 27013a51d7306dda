package spec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStagesMistakes: every problem of rollout.stages is reported at the
// field at fault (issue 16 §5); a selector that matches no declared node
// is no error for a stage.
func TestStagesMistakes(t *testing.T) {
	got := loadErrors(t, map[string]string{"f.cue": `package fleet

nodes: a: labels: ring: "0"
apps: x: {
	version: "1.0.0"
	artifact: url: "https://r/x.tgz"
	health: tcp: "h:1"
	rollout: stages: [
		{nodes: {ring: "0"}, bake: "1h"},
		{nodes: {region: "mars"}, batchSize: 0},
		{nodes: ["a", "Bad Name"], bake: "soon"},
		{nodes: "some", bakes: "1h"},
		{batchSize: 2},
	]
}
`})
	want := []string{
		`f.cue:10:40: apps.x.rollout.stages[1].batchSize: got 0, want an integer >= 1`,
		`f.cue:11:17: apps.x.rollout.stages[2].nodes[1]: invalid node name "Bad Name": character ' ' at byte 3; want 1-63 ASCII letters, digits, ".", "_" or "-", starting with a letter or digit, without "..", not ending in "." or ".lock"`,
		`f.cue:11:36: apps.x.rollout.stages[2].bake: got "soon", want a Go duration such as "1h": how long the next stage waits after this one's last wave`,
		`f.cue:12:11: apps.x.rollout.stages[3].nodes: got "some", want "all", a list of node names or a label selector such as {ring: "0"}`,
		`f.cue:12:19: apps.x.rollout.stages[3].bakes: unknown field "bakes", did you mean "bake"?`,
		`f.cue:13:3: apps.x.rollout.stages[4].nodes: missing, want "all", a list of node names or a label selector such as {ring: "0"}`,
	}
	joined := strings.Join(got, "\n")
	if joined != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", joined, strings.Join(want, "\n"))
	}
	if strings.Contains(joined, "mars") {
		t.Errorf("a stage selector matching no declared node is an error:\n%s", joined)
	}
}

// TestStagesLoad: stages decode with their selector forms; batchSize left
// out is 0 (the rollout's), bake left out is 0; export writes them back.
func TestStagesLoad(t *testing.T) {
	f, err := LoadFiles(map[string][]byte{"f.cue": []byte(minimal + `apps: web: rollout: stages: [
	{nodes: {ring: "0"}, batchSize: 1, bake: "1h"},
	{nodes: ["a", "b"]},
	{nodes: "all", bake: "5m"},
]
`)})
	if err != nil {
		t.Fatal(err)
	}
	s := f.Apps["web"].Rollout.Stages
	if len(s) != 3 || s[0].Nodes.Selector["ring"] != "0" || s[0].BatchSize != 1 || s[0].Bake.Duration != time.Hour ||
		len(s[1].Nodes.Names) != 2 || s[1].BatchSize != 0 || s[1].Bake.Duration != 0 || !s[2].Nodes.All || s[2].Bake.Duration != 5*time.Minute {
		t.Fatalf("stages = %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"nodes":{"ring":"0"},"batchSize":1,"bake":"1h0m0s"},{"nodes":["a","b"],"bake":"0s"},{"nodes":"all","bake":"5m0s"}]`
	if string(b) != want {
		t.Errorf("json:\n%s\nwant:\n%s", b, want)
	}
}
