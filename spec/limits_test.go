package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLimitsOnSizes: files too big or too many are refused before they are
// read or evaluated, naming the limit (before, any size was evaluated).
func TestLimitsOnSizes(t *testing.T) {
	big := []byte("package fleet\n// " + strings.Repeat("x", MaxFileBytes) + "\n")
	if _, err := LoadFiles(map[string][]byte{"big.cue": big}); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "big.cue: 1048594 bytes, more than 1048576 (1 MiB) for one file") {
		t.Errorf("one big file: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.cue"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "big.cue: 1048594 bytes") {
		t.Errorf("LoadDir of a big file: %v", err)
	}
	total := map[string][]byte{}
	for i := range 9 {
		total[fmt.Sprintf("f%d.cue", i)] = big[:MaxFileBytes]
	}
	if _, err := LoadFiles(total); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 8388608 (8 MiB)") {
		t.Errorf("too many bytes: %v", err)
	}
	many := map[string][]byte{}
	for i := range MaxFiles + 1 {
		many[fmt.Sprintf("f%d.cue", i)] = []byte("package fleet\n")
	}
	if _, err := LoadFiles(many); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "5001 .cue files, more than 5000") {
		t.Errorf("too many files: %v", err)
	}
}

// TestLimitsOnCounts: a 200-byte comprehension may declare more nodes than
// a fleet may have; the fleet is refused at its nodes field (before, 40,000
// nodes took 22 s and were planned), and a list of targets is bounded too.
func TestLimitsOnCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates 20,001 nodes (about 2 s)")
	}
	for _, tt := range []struct {
		nodes, names int
		want         string
	}{
		{MaxNodes + 1, 1, `f.cue:3:1: nodes: 20001 nodes, more than 20000, the limit of one fleet (docs/spec.md): split the fleet repo`},
		{3, MaxNodes + 1, `f.cue:5:9: apps.web.nodes: 20001 names, more than 20000 (docs/spec.md): use a label selector`},
	} {
		src := fmt.Sprintf(`package fleet
import "list"
nodes: {for i in list.Range(0, %d, 1) {"n\(i)": labels: region: "eu"}}
apps: web: {version: "1.0.0", artifact: url: "https://r.example/w.tgz", health: tcp: "h:1",
	nodes: [for i in list.Range(0, %d, 1) {"n\(i)"}]}
`, tt.nodes, tt.names)
		if got := loadErrors(t, map[string]string{"f.cue": src}); strings.Join(got, "\n") != tt.want {
			t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), tt.want)
		}
	}
}

// TestErrorsAreCapped: a fleet with thousands of problems lists the first
// MaxErrors and counts the rest.
func TestErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("package fleet\n")
	for i := range MaxErrors + 50 {
		fmt.Fprintf(&b, "nodes: \"bad %d\": {}\n", i)
	}
	got := loadErrors(t, map[string]string{"f.cue": b.String()})
	if len(got) != MaxErrors+1 || got[MaxErrors] != "and 50 more problems (the first 200 are listed)" {
		t.Errorf("%d errors, last %q", len(got), got[len(got)-1])
	}
}
