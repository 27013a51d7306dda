package makefile

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// root is the repository root, where the Makefile is.
const root = "../.."

func makeOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-C", root}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// helpLine is what `make help` says about target.
func helpLine(t *testing.T, target string) string {
	t.Helper()
	for _, line := range strings.Split(makeOut(t, "help"), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == target {
			return strings.Join(f[1:], " ")
		}
	}
	t.Fatalf("make help does not list %s", target)
	return ""
}

// TestHelpSaysWhatBuildBuilds: every product `make help` says build builds
// is an output of its recipe, and every output is named. Before, help said
// "bin/reconciler and the example workload" and build built only the first.
func TestHelpSaysWhatBuildBuilds(t *testing.T) {
	help := helpLine(t, "build")
	built := map[string]bool{}
	for _, m := range regexp.MustCompile(`-o (\S+)`).FindAllStringSubmatch(makeOut(t, "-n", "build"), -1) {
		built[filepath.Base(m[1])] = true
		if !strings.Contains(help, m[1]) {
			t.Errorf("make build writes %s; make help does not say so: %q", m[1], help)
		}
	}
	for _, product := range []string{"reconciler", "workload", "demo"} {
		if strings.Contains(help, product) && !built[product] {
			t.Errorf("make help says build builds the %s; its recipe does not: %q", product, help)
		}
	}
}

// TestTiers: test-unit is go test -short, test the full suite with -race.
func TestTiers(t *testing.T) {
	if unit := makeOut(t, "-n", "test-unit"); !regexp.MustCompile(`go test -short .*\./\.\.\.`).MatchString(unit) {
		t.Errorf("make test-unit runs:\n%s", unit)
	}
	full := makeOut(t, "-n", "test")
	if !regexp.MustCompile(`go test -race .*\./\.\.\.`).MatchString(full) || strings.Contains(full, "-short") {
		t.Errorf("make test runs:\n%s", full)
	}
}

// TestDemoSpeaksAtOnce: on a fresh clone (an empty build cache) make demo
// prints what it is doing within 3 seconds. Before, it was silent for about
// a minute while `go run` compiled. The demo is stopped after that line.
func TestDemoSpeaksAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts make demo (go build)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", root, "demo", "BIN="+t.TempDir())
	cmd.Env = append(os.Environ(), "GOCACHE="+t.TempDir(), "GOFLAGS=-buildvcs=false")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // make, go build and the demo, if it got that far
		_ = cmd.Wait()
	}()
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if took := time.Since(start); took > 3*time.Second || !strings.Contains(line, "building") {
			t.Fatalf("first line after %s: %q", took.Round(time.Millisecond), line)
		}
		t.Logf("first line after %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(line))
	case <-time.After(3 * time.Second):
		t.Fatal("make demo printed nothing for 3 seconds")
	}
}
