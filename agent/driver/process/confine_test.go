package process

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// TestCommandRunsOnlyProgramsOfTheRelease: a command[0] that (after node
// variables) names a program outside the release, directly, by a way up or
// through a symlink of the release, is refused and nothing runs; it ran
// before.
func TestCommandRunsOnlyProgramsOfTheRelease(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "ran")
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(releases["1"])); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sh", filepath.Join(dir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, nil)
	for _, argv0 := range []string{"/bin/sh", "bin/../../../../../../../../bin/sh", "bin/sh", "bin"} {
		r := rel("1", "127.0.0.1:0")
		r.Dir = dir
		r.Manifest.Command = []string{argv0, "-c", "touch " + victim}
		_, err := d.Switch(context.Background(), nil, r, nil2ok)
		if err == nil || !errors.Is(err, release.ErrOutsideRelease) || !strings.Contains(err.Error(), "command[0]") {
			t.Errorf("command[0] %q: %v, want refused", argv0, err)
		}
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("a program outside the release ran")
	}
}

// TestUnixSocketPathsConfined: a manifest's unix listen address binds only
// under the agent's socket directories, and the agent removes nothing but a
// stale socket it left there. The victims (a file outside, a file inside,
// a symlink to a file outside, a live socket) are untouched and each
// switch is refused with an error naming the path; before, the agent
// removed any path the manifest named and bound a socket there.
func TestUnixSocketPathsConfined(t *testing.T) {
	sockets, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	inside := filepath.Join(sockets, "data")
	link := filepath.Join(sockets, "link.sock")
	for _, f := range []string{victim, inside} {
		if err := os.WriteFile(f, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(sockets, "out")); err != nil {
		t.Fatal(err)
	}
	live, err := net.Listen("unix", filepath.Join(sockets, "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	d := newDriverWith(t, Options{SocketDirs: []string{sockets}})
	for _, c := range []struct{ addr, want string }{
		{victim, "is not under a socket directory of the agent"},
		{"../" + filepath.Base(outside) + "/victim", "leaves the socket directory"},
		{"out/victim", "not followed"},
		{"out/sub/web.sock", "not followed"}, // would create outside/sub
		{"data/web.sock", "not followed"},
		{inside, "exists and is not a socket the agent created"},
		{"data", "exists and is not a socket the agent created"},
		{link, "exists and is not a socket the agent created"},
		{"live.sock", "not a socket the agent created"},
		{"/etc/passwd", "is not under a socket directory of the agent"},
	} {
		r := rel("1", "")
		r.Manifest.Listen = []release.Listener{{Name: "http", Network: "unix", Address: c.addr}}
		_, err := d.Switch(context.Background(), nil, r, nil2ok)
		if err == nil || !errors.Is(err, ErrSocketPath) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("address %q: %v, want refused: %q", c.addr, err, c.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(outside, "sub")); err == nil {
		t.Error("a directory was created outside the socket directory")
	}
	for _, f := range []string{victim, inside} {
		if b, err := os.ReadFile(f); err != nil || string(b) != "precious" {
			t.Errorf("victim %s: %q, %v", f, b, err)
		}
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Errorf("symlink %s: %v, %v", link, fi, err)
	}
	if c, err := net.Dial("unix", filepath.Join(sockets, "live.sock")); err != nil {
		t.Errorf("live socket: %v", err)
	} else {
		c.Close()
	}

	// A stale socket nobody listens on that the agent did not create is
	// not removed either.
	foreign := filepath.Join(sockets, "foreign.sock")
	fl, err := net.Listen("unix", foreign)
	if err != nil {
		t.Fatal(err)
	}
	fl.(*net.UnixListener).SetUnlinkOnClose(false)
	fl.Close()
	r := rel("1", "")
	r.Manifest.Listen = []release.Listener{{Name: "http", Network: "unix", Address: "foreign.sock"}}
	if _, err := d.Switch(context.Background(), nil, r, nil2ok); err == nil || !strings.Contains(err.Error(), "not a socket the agent created") {
		t.Errorf("foreign stale socket: %v, want refused", err)
	}
	if _, err := os.Lstat(foreign); err != nil {
		t.Errorf("foreign stale socket: %v", err)
	}
}

// TestStaleSocketOfTheAgentIsReplaced: a socket the driver bound, left by a
// workload that died with the agent, is removed and bound again by the
// next agent (the ledger in the socket directory remembers it); an
// absolute path under a socket directory is accepted; Stop removes it.
func TestStaleSocketOfTheAgentIsReplaced(t *testing.T) {
	sockets := t.TempDir()
	path := filepath.Join(sockets, "web.sock")
	r := rel("1", "")
	r.Manifest.Listen = []release.Listener{{Name: "http", Network: "unix", Address: path}}
	d1 := newDriverWith(t, Options{SocketDirs: []string{sockets}})
	run, err := d1.Switch(context.Background(), nil, r, nil2ok)
	if err != nil {
		t.Fatal(err)
	}
	// While its workload listens, another agent does not take it.
	d2 := newDriverWith(t, Options{SocketDirs: []string{sockets}})
	if _, err := d2.Switch(context.Background(), nil, r, nil2ok); err == nil || !strings.Contains(err.Error(), "a live socket") {
		t.Fatalf("live socket of the agent's: %v, want refused", err)
	}
	// The agent dies first: while it lived, its supervisor could restart
	// the killed workload, which then listened again (seen in CI).
	d1.Close()
	pid := run.PIDs[0]
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the workload to die", func() bool { return gone(pid) })
	// Its group's other processes may hold the socket a moment longer
	// than its leader (seen in make test): wait until nobody listens.
	waitFor(t, "nobody to listen on the socket", func() bool {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err != nil
	}) // the file stays
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	run, err = d2.Switch(context.Background(), nil, r, nil2ok)
	if err != nil {
		t.Fatalf("stale socket of the agent's: %v", err)
	}
	if err := d2.Stop(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s left after Stop", path)
	}
}

// TestNoSocketDirRefusesUnixSockets: a driver without socket directories
// binds no unix socket.
func TestNoSocketDirRefusesUnixSockets(t *testing.T) {
	d := newDriver(t, nil)
	r := rel("1", "")
	r.Manifest.Listen = []release.Listener{{Name: "http", Network: "unix", Address: filepath.Join(t.TempDir(), "web.sock")}}
	if _, err := d.Switch(context.Background(), nil, r, nil2ok); err == nil || !errors.Is(err, ErrSocketPath) {
		t.Fatalf("%v, want refused", err)
	}
}

// forker is a release whose workload forks a child that ignores SIGTERM
// and then writes its pid to pidFile; the workload itself exits on SIGTERM
// at once.
func forker(t *testing.T, v, pidFile string) driver.Release {
	dir := t.TempDir()
	script := `#!/bin/sh
sh -c 'trap "" TERM; echo $$ > "$CHILD_PID_FILE.tmp"; mv "$CHILD_PID_FILE.tmp" "$CHILD_PID_FILE"; while :; do sleep 0.05; done' &
trap 'exit 0' TERM
while :; do sleep 0.05; done
`
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "forker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return driver.Release{App: "forker", Version: v, Dir: dir, Manifest: release.Manifest{
		App: "forker", Version: v, Command: []string{"bin/forker"}, DrainTimeout: "300ms",
		Env: map[string]string{"CHILD_PID_FILE": pidFile}}}
}

// childPid waits for the pid a forker wrote.
func childPid(t *testing.T, pidFile string) int {
	var pid int
	waitFor(t, "the child's pid in "+pidFile, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// gone reports whether pid has exited (a zombie counts as exited).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// TestOldVersionsChildrenDoNotSurvive: a child the old version forked that
// ignores SIGTERM is killed with SIGKILL once the drain timeout passes after
// the swap, and so at Stop; before, it kept running (and serving) after
// the workload that forked it exited.
func TestOldVersionsChildrenDoNotSurvive(t *testing.T) {
	d := newDriver(t, nil)
	ctx := context.Background()
	pf1, pf2 := filepath.Join(t.TempDir(), "1"), filepath.Join(t.TempDir(), "2")
	r1, err := d.Switch(ctx, nil, forker(t, "1", pf1), nil2ok)
	if err != nil {
		t.Fatal(err)
	}
	c1 := childPid(t, pf1)
	start := time.Now()
	r2, err := d.Switch(ctx, &r1, forker(t, "2", pf2), nil2ok)
	if err != nil {
		t.Fatal(err)
	}
	if !gone(c1) {
		t.Fatalf("the child %d of version 1 still runs after the swap (%v after it began)", c1, time.Since(start))
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("swap took %v: the child was killed before the drain timeout", took)
	}
	c2 := childPid(t, pf2)
	if gone(c2) {
		t.Fatal("the new version's child is gone")
	}
	if err := d.Stop(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if !gone(c2) {
		t.Fatalf("the child %d of version 2 still runs after Stop", c2)
	}
}

// TestAdoptStopsRemnantsOfADrainedVersion: a version recorded as draining
// whose workload exited while a child it forked still runs (the agent died
// mid-drain) has the child stopped by the next agent; before, Adopt saw
// the workload gone and left the child running.
func TestAdoptStopsRemnantsOfADrainedVersion(t *testing.T) {
	pf := filepath.Join(t.TempDir(), "child")
	d1 := newDriverWith(t, Options{})
	r1, err := d1.Switch(context.Background(), nil, forker(t, "1", pf), nil2ok)
	if err != nil {
		t.Fatal(err)
	}
	child := childPid(t, pf)
	d1.Close() // the agent dies
	rec, err := decodeRecord(r1)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(rec.Current.PID, syscall.SIGKILL); err != nil { // the workload alone
		t.Fatal(err)
	}
	waitFor(t, "the workload to exit", func() bool { return gone(rec.Current.PID) })
	if gone(child) {
		t.Fatal("the child died with the workload")
	}
	rec.Draining, rec.Current = []procRecord{*rec.Current}, nil
	d2 := newDriver(t, nil)
	if err := d2.Adopt(context.Background(), rec.running("forker")); err != nil {
		t.Fatal(err)
	}
	if !gone(child) {
		t.Fatalf("the child %d of the drained version still runs after Adopt", child)
	}
}

// TestOldVersionsDaemonsDoNotSurvive: a child that leaves the version's
// session and process group (setsid, once or after a double fork, as a
// daemon does) and ignores SIGTERM is still the version's: it is killed
// after the drain timeout of the swap, and at Stop. Before, it kept
// running after its version was stopped (it is in no group the agent
// signalled); the instance token in its environment names it now.
func TestOldVersionsDaemonsDoNotSurvive(t *testing.T) {
	for _, how := range []string{"setsid bin/daemon &", "(setsid bin/daemon &)"} {
		t.Run(how, func(t *testing.T) {
			d := newDriver(t, nil)
			ctx := context.Background()
			pf1, pf2 := filepath.Join(t.TempDir(), "1"), filepath.Join(t.TempDir(), "2")
			r1, err := d.Switch(ctx, nil, daemonizer(t, "1", pf1, how), nil2ok)
			if err != nil {
				t.Fatal(err)
			}
			c1 := childPid(t, pf1)
			t.Cleanup(func() { _ = syscall.Kill(c1, syscall.SIGKILL) })
			r2, err := d.Switch(ctx, &r1, daemonizer(t, "2", pf2, how), nil2ok)
			if err != nil {
				t.Fatal(err)
			}
			c2 := childPid(t, pf2)
			t.Cleanup(func() { _ = syscall.Kill(c2, syscall.SIGKILL) })
			if !gone(c1) {
				t.Fatalf("the daemon %d of version 1 still runs after the swap", c1)
			}
			if gone(c2) {
				t.Fatal("the new version's daemon is gone")
			}
			if err := d.Stop(ctx, r2); err != nil {
				t.Fatal(err)
			}
			if !gone(c2) {
				t.Fatalf("the daemon %d of version 2 still runs after Stop", c2)
			}
		})
	}
}

// daemonizer is a release whose workload starts bin/daemon with how (a
// shell command) and serves until SIGTERM; the daemon ignores SIGTERM and
// writes its pid to pidFile.
func daemonizer(t *testing.T, v, pidFile, how string) driver.Release {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	daemon := `#!/bin/sh
trap "" TERM
echo $$ > "$CHILD_PID_FILE.tmp"; mv "$CHILD_PID_FILE.tmp" "$CHILD_PID_FILE"
while :; do sleep 0.05; done
`
	workload := "#!/bin/sh\n" + how + "\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n"
	for name, s := range map[string]string{"daemon": daemon, "workload": workload} {
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return driver.Release{App: "daemonizer", Version: v, Dir: dir, Manifest: release.Manifest{
		App: "daemonizer", Version: v, Command: []string{"bin/workload"}, DrainTimeout: "300ms",
		Env: map[string]string{"CHILD_PID_FILE": pidFile}}}
}
