package isolate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetops/reconciler/spec"
	"github.com/fleetops/reconciler/spec/isolate"
)

// childEnv makes this test binary act as the child (Serve) when re-executed
// by a Loader.
const childEnv = "RECONCILER_ISOLATE_TEST_CHILD=1"

func TestMain(m *testing.M) {
	if os.Getenv("RECONCILER_ISOLATE_TEST_CHILD") == "1" {
		if err := isolate.Serve(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// loader re-executes this test binary as the child.
func loader(timeout time.Duration, memory int64) isolate.Loader {
	return isolate.Loader{Path: os.Args[0], Args: []string{}, Env: []string{childEnv}, Timeout: timeout, Memory: memory}
}

// exampleFiles reads the example fleet of the repository.
func exampleFiles(t testing.TB) map[string][]byte {
	t.Helper()
	dir := filepath.Join("..", "..", "examples", "fleet")
	names, err := filepath.Glob(filepath.Join(dir, "*.cue"))
	if err != nil || len(names) == 0 {
		t.Fatalf("example fleet in %s: %v (%d files)", dir, err, len(names))
	}
	files := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = b
	}
	return files
}

// TestFleetRoundTripsJSON: what the child writes decodes to the fleet it
// loaded, for the example fleet and a fleet using every target form, nodes
// with and without labels and vars, and each kind of health check.
func TestFleetRoundTripsJSON(t *testing.T) {
	for name, files := range fleets(t) {
		f, err := spec.LoadFiles(files)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		back, err := isolate.DecodeFleet(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(f, back) {
			t.Errorf("%s: round trip changed the fleet:\n%+v\n%+v", name, f, back)
		}
	}
}

// fleets are valid fleets: the example and small ones for each target form.
func fleets(t testing.TB) map[string]map[string][]byte {
	app := `apps: %s: {version: "1.0.0", artifact: url: "https://r.example/x.tgz", health: tcp: "127.0.0.1:1", nodes: %s}` + "\n"
	small := "package fleet\nnodes: n1: {labels: region: \"eu\", vars: PORT: \"8080\"}\nnodes: n2: {}\n" +
		fmt.Sprintf(app, "all", `"all"`) + fmt.Sprintf(app, "names", `["n1", "n2"]`) +
		fmt.Sprintf(app, "none", `[]`) + fmt.Sprintf(app, "sel", `{region: "eu"}`) +
		`apps: ex: {version: "2.0.0", artifact: url: "https://r.example/x.tgz", health: exec: ["bin/check", "-v"], rollout: {strategy: "canary", canary: count: 1}}` + "\n"
	return map[string]map[string][]byte{
		"examples/fleet": exampleFiles(t),
		"small":          {"fleet.cue": []byte(small)},
	}
}

// TestSameAsInProcess: a fleet, and an invalid spec's problems with their
// positions, come out of the child as spec.LoadFiles returns them here.
func TestSameAsInProcess(t *testing.T) {
	cases := fleets(t)
	cases["invalid"] = map[string][]byte{"a.cue": []byte("package fleet\napps: web: version: 2.0\n"), "b.cue": []byte("package fleet\nnodes: n1: labels: 3\n")}
	cases["syntax"] = map[string][]byte{"a.cue": []byte("package fleet\napps: {\n")}
	cases["over a limit"] = map[string][]byte{"big.cue": make([]byte, spec.MaxFileBytes+1)}
	l := loader(time.Minute, 0)
	for name, files := range cases {
		want, wantErr := spec.LoadFiles(files)
		got, err := l.LoadSpec(context.Background(), files)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: child %+v, %v\nin-process %+v, %v", name, got, err, want, wantErr)
		}
		if wantErr != nil && errors.Is(err, spec.ErrLimit) != errors.Is(wantErr, spec.ErrLimit) {
			t.Errorf("%s: child's error %v: errors.Is ErrLimit differs", name, err)
		}
		var serr *spec.Errors
		if errors.As(wantErr, &serr) && !errors.As(err, &serr) {
			t.Errorf("%s: child's error %T is not *spec.Errors", name, err)
		}
	}
}

// hostile are short specs whose evaluation is quadratic in CUE (issue 18 §8).
func hostile(nodes, names int) map[string][]byte {
	return map[string][]byte{"f.cue": fmt.Appendf(nil, `package fleet
import "list"
nodes: {for i in list.Range(0, %d, 1) {"n\(i)": labels: region: "eu"}}
apps: web: {version: "1.0.0", artifact: url: "https://r.example/w.tgz", health: tcp: "h:1",
	nodes: [for i in list.Range(0, %d, 1) {"n\(i)"}]}
`, nodes, names)}
}

// hiddenField is a comprehension into a hidden field (issue 11): no count
// limit sees it, the deadline does.
var hiddenField = map[string][]byte{"f.cue": []byte(`package fleet
import "list"
_x: {for i in list.Range(0, 300000, 1) {"k\(i)": i}}
apps: {}
`)}

// TestHostileSpecsAreRefusedInTime: the comprehensions of issue 18 §8 (22-54 s
// in-process) and one into a hidden field (more than 60 s) are refused at
// the deadline, with an error naming the limit.
func TestHostileSpecsAreRefusedInTime(t *testing.T) {
	const timeout = 2 * time.Second
	for name, files := range map[string]map[string][]byte{
		"40,000 nodes": hostile(40000, 1), "100,000 nodes": hostile(100000, 1),
		"100,000 names": hostile(3, 100000), "300,000 hidden fields": hiddenField,
	} {
		start := time.Now()
		// Memory to spare: under -race the child's ThreadSanitizer maps far
		// more than the heap, and this test is about the deadline.
		_, err := loader(timeout, 16<<30).LoadSpec(context.Background(), files)
		took := time.Since(start)
		var lerr *isolate.LimitError
		if !errors.As(err, &lerr) || lerr.Memory || !errors.Is(err, spec.ErrLimit) ||
			!strings.Contains(err.Error(), "evaluation took more than 2s (limit --spec-timeout; stopped after ") {
			t.Fatalf("%s: %v, want a time limit error", name, err)
		}
		if took > timeout+4*time.Second { // the kill, WaitDelay, and 2 shared cores
			t.Errorf("%s: refused after %v, limit %v", name, took, timeout)
		}
		t.Logf("%s: refused after %v: %v", name, took, err)
	}
}

// TestHostileSpecsAreRefusedForMemory: under a small memory limit the same
// specs are refused for memory, before the deadline.
func TestHostileSpecsAreRefusedForMemory(t *testing.T) {
	for name, files := range map[string]map[string][]byte{
		"100,000 nodes": hostile(100000, 1), "100,000 names": hostile(3, 100000), "300,000 hidden fields": hiddenField,
	} {
		start := time.Now()
		_, err := loader(time.Minute, 64<<20).LoadSpec(context.Background(), files)
		var lerr *isolate.LimitError
		if !errors.As(err, &lerr) || !lerr.Memory ||
			!strings.Contains(err.Error(), "evaluation needed more than 64 MiB of memory (limit --spec-memory; stopped after ") {
			t.Fatalf("%s: %v, want a memory limit error", name, err)
		}
		t.Logf("%s: refused after %v: %v", name, time.Since(start), err)
	}
}

// TestValidSpecFitsTheDefaults: the example fleet loads under the agent's
// default limits (a limit that refused it would be useless).
func TestValidSpecFitsTheDefaults(t *testing.T) {
	if _, err := (isolate.Loader{Path: os.Args[0], Args: []string{}, Env: []string{childEnv}}).LoadSpec(context.Background(), exampleFiles(t)); err != nil {
		t.Fatal(err)
	}
}

// TestBrokenChildIsNamed: a child that is not Serve (here: the test binary
// running no test) gives an error naming the program, not a limit.
func TestBrokenChildIsNamed(t *testing.T) {
	l := isolate.Loader{Path: os.Args[0], Args: []string{"-test.run=^$"}, Timeout: time.Minute}
	_, err := l.LoadSpec(context.Background(), exampleFiles(t))
	if err == nil || errors.Is(err, spec.ErrLimit) || !strings.Contains(err.Error(), os.Args[0]) {
		t.Fatalf("broken child: %v", err)
	}
}

// TestValidSpecFitsASmallLimit: the memory limit counts what the evaluation
// maps, not the process: a small fleet loads within 256 MiB. (64 MiB, the
// limit under which the hostile specs above are refused, leaves the heap
// 12 MB of address space: on a loaded machine under -race each thread the
// runtime starts maps an 8 MiB stack, and a valid fleet was refused once.)
func TestValidSpecFitsASmallLimit(t *testing.T) {
	for name, files := range fleets(t) {
		if _, err := loader(time.Minute, 256<<20).LoadSpec(context.Background(), files); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// BenchmarkLoad compares spec.LoadFiles in this process with the child (its
// start, the JSON both ways and the evaluation), on the example fleet and
// on 1,000 apps. go test -run '^$' -bench Load ./spec/isolate
func BenchmarkLoad(b *testing.B) {
	var big strings.Builder
	big.WriteString("package fleet\n")
	for i := range 1000 {
		fmt.Fprintf(&big, "apps: app%d: {version: \"1.0.%d\", artifact: url: \"https://r.example/a%d.tgz\", health: tcp: \"127.0.0.1:%d\"}\n", i, i, i, 1000+i)
	}
	for name, files := range map[string]map[string][]byte{"example": exampleFiles(b), "1000apps": {"f.cue": []byte(big.String())}} {
		b.Run(name+"/in-process", func(b *testing.B) {
			for b.Loop() {
				if _, err := spec.LoadFiles(files); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/child", func(b *testing.B) {
			l := loader(time.Minute, 0)
			for b.Loop() {
				if _, err := l.LoadSpec(context.Background(), files); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
