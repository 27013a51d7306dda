package spec

import (
	"fmt"
	"testing"
)

// BenchmarkLoad1000 loads and validates a fleet of 1,000 app specs, one file
// per app plus a template and six declared nodes, as an agent does on every
// new commit (a fresh cue.Context each time).
func BenchmarkLoad1000(b *testing.B) {
	files := map[string][]byte{"fleet.cue": []byte(`package fleet

apps: [Name=_]: {
	version: string
	artifact: url: "https://releases.example.com/\(Name)/\(Name)-\(version).tar.gz"
	health: http: *"http://127.0.0.1:${PORT}/health" | string
}
nodes: {
	for i in [1, 2, 3, 4, 5, 6] {
		"node-\(i)": {labels: {region: [if i < 4 {"eu"}, "us"][0]}, vars: PORT: "80\(i)"}
	}
}
`)}
	for i := range 1000 {
		files[fmt.Sprintf("app%04d.cue", i)] = fmt.Appendf(nil, `package fleet

apps: app%04d: {
	version: "1.%d.0"
	rollout: {strategy: %q, batchSize: 2, batchDelay: "10s"}
	nodes: {region: "eu"}
}
`, i, i, []string{"rolling", "canary", "all_at_once"}[i%3])
	}
	for b.Loop() {
		f, err := LoadFiles(files)
		if err != nil {
			b.Fatal(err)
		}
		if len(f.Apps) != 1000 {
			b.Fatalf("got %d apps", len(f.Apps))
		}
	}
}
