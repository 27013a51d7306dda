package process

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fleetops/reconciler/agent/driver"
	"github.com/fleetops/reconciler/release"
)

// shim sets LISTEN_PID to the shell's own pid, which exec keeps.
const shim = `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`

// proc is one workload process, started by this agent or adopted.
type proc struct {
	rec     procRecord
	started time.Time
	// done is closed once the process has exited; exitErr is set before.
	done    chan struct{}
	exitErr error
	// stopping is set before the driver signals it: its exit is no crash.
	stopping atomic.Bool
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs rel's command with socks as fds 3.. and watches it until it
// exits or ctx ends. Before it forks it calls pending with the start's
// instance token and release, for the caller to record: an agent killed
// after the fork and before the pid is recorded leaves a process that only
// the token finds (Adopt stops it).
func (d *Driver) start(ctx context.Context, rel driver.Release, socks []*socket, pending func(procRecord)) (*proc, error) {
	instance, err := newInstance()
	if err != nil {
		return nil, fmt.Errorf("start %s %s: %w", rel.App, rel.Version, err)
	}
	pending(procRecord{Instance: instance, Release: rel})
	cmd, err := d.command(rel, socks, instance)
	if err != nil {
		return nil, err
	}
	log, err := d.openLog(rel.App)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	err = cmd.Start()
	log.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s %s: %w", rel.App, rel.Version, err)
	}
	p := &proc{rec: procRecord{PID: cmd.Process.Pid, Instance: instance, Release: rel}, started: time.Now(), done: make(chan struct{})}
	for _, s := range socks {
		p.rec.Sockets = append(p.rec.Sockets, s.bound)
	}
	p.rec.StartTime, _, _ = procStat(p.rec.PID)
	if err := d.watch(ctx, p, cmd.Wait); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("start %s %s: %w", rel.App, rel.Version, err)
	}
	d.log.Info("started", "app", rel.App, "version", rel.Version, "pid", p.rec.PID)
	return p, nil
}

// command builds the workload's exec.Cmd: argv[0] relative to the release,
// its own session, sockets from fd 3 and the environment.
func (d *Driver) command(rel driver.Release, socks []*socket, instance string) (*exec.Cmd, error) {
	argv := rel.Manifest.Command
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s %s: release manifest has no command", rel.App, rel.Version)
	}
	// After node variables, symlinks resolved: a program of the release.
	path, err := release.Program(rel.Dir, argv[0])
	if err != nil {
		return nil, fmt.Errorf("start %s %s: command[0]: %w", rel.App, rel.Version, err)
	}
	var cmd *exec.Cmd
	if d.opts.Shell == "-" {
		cmd = exec.Command(path, argv[1:]...)
	} else {
		cmd = exec.Command(d.opts.Shell, append([]string{"-c", shim, path}, argv[1:]...)...)
	}
	cmd.Dir = rel.Dir
	cmd.Env = append(environ(rel, socks), instanceVar+"="+instance)
	// Its own session, so its own process group too: stop ends all of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	for _, s := range socks {
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.file)
	}
	return cmd, nil
}

// environ is the agent's environment without its own secrets and settings
// (RECONCILER_*, COSIGN_*) or socket-activation variables, then the
// manifest's env, then rel.Env, then LISTEN_FDS and LISTEN_FDNAMES.
func environ(rel driver.Release, socks []*socket) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, "LISTEN_", "NOTIFY_SOCKET=", "RECONCILER_", "COSIGN_") {
			env = append(env, kv)
		}
	}
	env = append(env, sortedEnv(rel.Manifest.Env)...)
	env = append(env, sortedEnv(rel.Env)...)
	if len(socks) > 0 {
		names := make([]string, len(socks))
		for i, s := range socks {
			names[i] = s.name
		}
		env = append(env, "LISTEN_FDS="+strconv.Itoa(len(socks)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	return env
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func sortedEnv(m map[string]string) []string {
	var env []string
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func (d *Driver) openLog(app string) (*os.File, error) {
	if err := os.MkdirAll(d.opts.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("log of %s: %w", app, err)
	}
	return os.OpenFile(filepath.Join(d.opts.LogDir, app+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// watch closes p.done when the process exits, through a pidfd on the
// runtime's poller; reap (cmd.Wait for children, nil when adopted) collects
// the exit status. Watching stops, without closing done, when ctx ends.
func (d *Driver) watch(ctx context.Context, p *proc, reap func() error) error {
	fd, err := unix.PidfdOpen(p.rec.PID, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("pidfd of pid %d: %w", p.rec.PID, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer f.Close()
		stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
		defer stop()
		err := rc.Read(func(fd uintptr) bool {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return err == nil && n > 0
		})
		if err != nil {
			return // ctx ended: the process still runs
		}
		if reap != nil {
			p.exitErr = reap()
		}
		close(p.done)
	}()
	return nil
}

// stop ends a version: SIGTERM to its session (the workload is started as
// a session and process group leader, so what it forks is in them unless
// it leaves), a wait of up to drain for the workload and everything of its
// session to exit, then SIGKILL to what is left. A child that ignores
// SIGTERM does not outlive its version. It returns when all of it has
// exited or ctx ends (the process then finishes its drain on its own).
func (d *Driver) stop(ctx context.Context, p *proc, drain time.Duration) error {
	p.stopping.Store(true)
	sid := p.rec.PID
	if p.exited() && len(p.rec.members()) == 0 {
		return nil
	}
	fail := func() error {
		return fmt.Errorf("stop %s %s pid %d: %w", p.rec.Release.App, p.rec.Release.Version, p.rec.PID, ctx.Err())
	}
	d.log.Info("stopping", "app", p.rec.Release.App, "version", p.rec.Release.Version, "pid", p.rec.PID, "drain", drain)
	signalSession(p, syscall.SIGTERM)
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-p.done:
		err := waitSession(ctx, p.rec, t.C)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fail()
		}
	case <-ctx.Done():
		return fail()
	case <-t.C:
	}
	left := p.rec.members()
	d.log.Warn("drain timeout: killing", "app", p.rec.Release.App, "version", p.rec.Release.Version, "pid", p.rec.PID,
		"leader_exited", p.exited(), "session_processes", len(left))
	signalSession(p, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-ctx.Done():
		return fail()
	}
	kill := time.NewTimer(5 * time.Second) // SIGKILL'd processes exit at once; zombies do not count
	defer kill.Stop()
	if err := waitSession(ctx, p.rec, kill.C); err != nil && ctx.Err() != nil {
		return fail()
	} else if err != nil {
		d.log.Error("processes of a stopped version still run after SIGKILL", "app", p.rec.Release.App,
			"version", p.rec.Release.Version, "session", sid, "pids", p.rec.members())
	}
	return nil
}

// errSessionLeft is waitSession's error when until fires first.
var errSessionLeft = errors.New("processes of the session are left")

// waitSession waits until no process of pr is left (pr.members), until
// fires or ctx ends.
func waitSession(ctx context.Context, pr procRecord, until <-chan time.Time) error {
	delay := 10 * time.Millisecond
	for len(pr.members()) > 0 {
		t := time.NewTimer(delay) // polling /proc: no event says a session emptied
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-until:
			t.Stop()
			return errSessionLeft
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
	return nil
}

// signalSession signals the workload's process group, every other process
// of its session (a child that moved to a group of its own) or carrying its
// instance token (one that left the session: setsid, a daemon's double
// fork), and the workload itself while it has not exited.
func signalSession(p *proc, sig syscall.Signal) {
	sid := p.rec.PID
	_ = syscall.Kill(-sid, sig)
	for _, pid := range p.rec.members() {
		_ = syscall.Kill(pid, sig)
	}
	if !p.exited() {
		_ = syscall.Kill(sid, sig)
	}
}

// instanceVar names the environment variable that carries a started
// workload's instance token. Every process it forks inherits it, also one
// that leaves the session and process group, so the token finds what is
// left of a version where groups do not (short of a cgroup).
const instanceVar = "RECONCILER_INSTANCE"

// newInstance makes a token no other start shares: 128 random bits.
func newInstance() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("instance token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// members lists the live processes of pr: its session and process group
// (sessionMembers), and any other process whose environment, as it was
// started, carries pr's instance token (records written before the token
// have none: their session alone). A process that clears its environment
// before it execs escapes: only a cgroup holds that one.
func (pr procRecord) members() []int {
	var pids []int
	if pr.PID > 0 { // a pending start has no session yet (session 0 is the kernel's)
		pids = sessionMembers(pr.PID)
	}
	if pr.Instance == "" {
		return pids
	}
	mark := []byte(instanceVar + "=" + pr.Instance + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return pids
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || slices.Contains(pids, pid) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, mark) {
			continue // exited meanwhile, someone else's, or not ours
		}
		if _, state, err := procStat(pid); err == nil && state != "Z" && state != "X" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sessionMembers lists the live (not zombie) processes whose session or
// process group is sid. While one is left, the kernel does not give sid
// to a new process, so signalling them cannot hit a stranger.
func sessionMembers(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// After the command: state, ppid, pgrp, session.
		f := strings.Fields(s[i+1:])
		if len(f) < 4 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if f[2] == strconv.Itoa(sid) || f[3] == strconv.Itoa(sid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// signalGroup signals the session the workload leads (its pid is the
// group's id), falling back to the pid alone.
func signalGroup(pid int, sig syscall.Signal) {
	if err := syscall.Kill(-pid, sig); errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pid, sig)
	}
}

// drainTimeout is the manifest's drainTimeout or the driver's default.
func (d *Driver) drainTimeout(rel driver.Release) time.Duration {
	if v, err := time.ParseDuration(rel.Manifest.DrainTimeout); err == nil && v > 0 {
		return v
	}
	return d.opts.DrainTimeout
}
