package cli

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSecondAgentOnStateDirExits: while an agent runs on a state
// directory, a second agent on it (another node name, as in the report)
// exits 1 at once naming the first one's pid, and changes nothing. Before,
// it adopted the first one's workloads and stopped them.
func TestSecondAgentOnStateDirExits(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs an agent")
	}
	f := newFixture(t, "1.0.0")
	stateDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		e := &env{stdout: &bytes.Buffer{}, stderr: &syncWriter{w: &errb}, stdin: strings.NewReader(""), wd: f.dir, getenv: func(string) string { return "" }}
		done <- run(ctx, e, []string{"agent", "--repo", f.repo, "--node", "n1", "--state-dir", stateDir,
			"--trust-key", f.pub, "--listen", "", "--poll", "100ms", "--coordination", "none"})
	}()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(stateDir + "/state.json"); err == nil && bytes.Contains(b, []byte(`"active": "1.0.0"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first agent did not converge")
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	r := f.run("agent", "--once", "--repo", f.repo, "--node", "n2", "--state-dir", stateDir,
		"--trust-key", f.pub, "--listen", "", "--coordination", "none")
	if r.code != 1 || !strings.Contains(r.stderr, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(r.stderr, "in use by another agent") {
		t.Fatalf("second agent: exit %d\n%s", r.code, r.stderr)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("second agent took %v to refuse", time.Since(start))
	}
	if b, _ := os.ReadFile(stateDir + "/state.json"); !bytes.Contains(b, []byte(`"active": "1.0.0"`)) {
		t.Fatalf("state changed by the second agent:\n%s", b)
	}
}

// syncWriter serialises writes from an agent running in a goroutine.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
