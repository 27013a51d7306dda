package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/internal/clock"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// Stores the harness runs against.
const (
	StoreGit  = "git"
	StoreEtcd = "etcd"
)

// maxGitConns bounds the connections to the Git server (start).
const maxGitConns = 1024

// appName is the one app every simulated node runs.
const appName = "sim"

// Options configure a run. Zero values take the defaults in comments.
type Options struct {
	Nodes   int           // simulated nodes (default 10)
	Wave    int           // the rollout's batchSize (default Nodes/10, at least 1)
	Switch  time.Duration // simulated switch time (default 500ms)
	Install time.Duration // simulated install time (default 100ms)
	Store   string        // "git" (default) or "etcd": where the shared state lives
	// Idle is how long idle load is measured, once every node runs the
	// first version (default 30s; tests pass less).
	Idle time.Duration
	// Timeout bounds each phase (every node up to date, then the
	// rollout); default 10m.
	Timeout time.Duration
	// Poll is each agent's Config.Poll (default: the agent's, 30s).
	Poll time.Duration
	// GitPoll is the stores' ref-listing interval when watching
	// (fleetrepo PollInterval of the tracked branch and, with the Git
	// store, of the shared state; default: fleetrepo's, 10s and 60s).
	GitPoll time.Duration
	// LeaseTTL is the coordinator's (default: rollout's, 20s).
	LeaseTTL time.Duration
	// ActivePoll is the coordinator's (default: rollout's, 2s on Git, 5s
	// on etcd).
	ActivePoll time.Duration
	// GitCache answers repeated ref advertisements (GET info/refs of
	// git-upload-pack) from memory until a push (adCache): a faster Git
	// server, the same requests counted.
	GitCache bool
	// GitWorkers bounds the git http-backend processes running at once
	// (default 8).
	GitWorkers int
	// LivenessTTL is the TTL of each node's etcd liveness lease (default:
	// etcdstore's, 30s): the agent's --liveness-ttl.
	LivenessTTL time.Duration
	// EtcdConns is how many etcd client connections the nodes share,
	// round-robin (default 1). A real node has its own; on one, a
	// 10,000-node run's reads queued behind each other past their timeout.
	EtcdConns int
	// EtcdCommand, when set, runs the etcd server as its own process
	// instead of in this one: the command, given the data directory as
	// its last argument, prints its client endpoints on the first line of
	// its stdout and serves until its stdin closes (ServeEtcd;
	// reconciler-scale -etcd-process runs itself so). In this process the
	// server's garbage collector shares a heap of 10,000 agents with them.
	EtcdCommand []string
	// Webhooks is how many agents (the first ones) run the real push
	// webhook receiver (internal/webhook), which the harness calls after
	// each push as a Git host does: a signed GitHub push event (default
	// 0: the agents learn of a push by polling, and from the etcd tip key
	// that the first to learn publishes).
	Webhooks int
	// Dir holds the repositories, etcd's data and every node's state
	// (required; the caller removes it).
	Dir string
	// Progress, when set, gets one line per phase.
	Progress io.Writer
	// HeapProfile, when set, gets the heap profile (pprof) once the rollout
	// is done, before the agents stop: what the nodes hold.
	HeapProfile io.Writer
	// Logger for every agent, coordinator and store (default: discard).
	Logger *slog.Logger
	// Clock of every node and of the measurements (default the system
	// clock: the servers are real, so time is).
	Clock clock.Clock
}

func (o *Options) withDefaults() error {
	if o.Dir == "" {
		return errors.New("scale: Options.Dir is required")
	}
	if o.Nodes <= 0 {
		o.Nodes = 10
	}
	if o.Wave <= 0 {
		o.Wave = max(1, o.Nodes/10)
	}
	if o.Switch <= 0 {
		o.Switch = 500 * time.Millisecond
	}
	if o.Install < 0 {
		return fmt.Errorf("scale: install time %s is negative", o.Install)
	}
	if o.Install == 0 {
		o.Install = 100 * time.Millisecond
	}
	switch o.Store {
	case "":
		o.Store = StoreGit
	case StoreGit, StoreEtcd:
	default:
		return fmt.Errorf("scale: store %q: want %q or %q", o.Store, StoreGit, StoreEtcd)
	}
	if o.Idle <= 0 {
		o.Idle = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.GitWorkers <= 0 {
		o.GitWorkers = 8
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Clock = clock.Or(o.Clock)
	return nil
}

// harness is one run's servers and nodes.
type harness struct {
	opt   Options
	clock clock.Clock
	bare  string
	git   *gitServer
	etcd  *etcdServer
	// decoded: the rollout records' events, decoded once for every
	// node's etcdstore.Store (immutable once written)
	decoded *etcdstore.Decoded
	log     *fleetLog
	specs   *specCache
	// healthURL answers 200: the spec's health check, which every node
	// runs for real (one server for all: nothing runs behind it).
	healthURL string
	health    *http.Server
	reader    rollout.Shared // the harness's own handle on the shared state

	hooks   []string // webhook receivers' URLs (Options.Webhooks)
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	closers []io.Closer
	errMu   sync.Mutex
	errs    []error // agents that returned an error
}

// Run starts the servers and opts.Nodes simulated nodes, lets them deploy
// version 1.0.0, measures idle load, pushes 1.1.0 and measures the
// rollout. The error is a run that did not complete (a phase timed out,
// a server did not start); broken invariants are in Result.Check.
func Run(ctx context.Context, opt Options) (*Result, error) {
	if err := opt.withDefaults(); err != nil {
		return nil, err
	}
	h := &harness{opt: opt, clock: opt.Clock, log: newFleetLog(opt.Clock),
		specs: &specCache{byKey: map[[32]byte]*specEntry{}}, decoded: etcdstore.NewDecoded()}
	defer h.close()
	res := &Result{Nodes: opt.Nodes, Wave: opt.Wave, Store: opt.Store, Webhooks: min(opt.Webhooks, opt.Nodes), Switch: Seconds(opt.Switch), Install: Seconds(opt.Install),
		Idle: Seconds(opt.Idle), Shared: h.shared()}
	res.Waves = int(math.Ceil(float64(opt.Nodes) / float64(opt.Wave)))
	if err := h.start(); err != nil {
		return nil, err
	}
	var err error
	if h.reader, err = h.openReader(ctx); err != nil {
		return nil, err
	}
	mem0 := readMem()
	// The nodes start on a spec with no app and announce themselves, so
	// that the first deployment's plan has every node in its waves.
	if _, err := h.push(""); err != nil {
		return nil, err
	}
	h.say("starting %d agents (store %s)", opt.Nodes, opt.Store)
	t0 := h.clock.Now()
	if err := h.startNodes(ctx); err != nil {
		return nil, err
	}
	if err := h.reported(ctx); err != nil {
		return nil, err
	}
	res.Startup = Seconds(h.clock.Since(t0))
	h.say("every node reported (%s); pushing 1.0.0", res.Startup)
	t0 = h.clock.Now()
	if _, err := h.pushAndCall(ctx, "1.0.0"); err != nil {
		return nil, err
	}
	if err := h.await(ctx, "1.0.0", "first deployment"); err != nil {
		return nil, err
	}
	res.FirstDeploy = Seconds(h.clock.Since(t0))
	if _, err := h.settled(ctx, "1.0.0"); err != nil {
		return nil, fmt.Errorf("first deployment: %w", err)
	}
	res.Memory = memPerNode(mem0, readMem(), opt.Nodes)

	h.say("every node runs 1.0.0 (%s); measuring idle load for %s", res.FirstDeploy, opt.Idle)
	idle0 := h.sample()
	if err := h.clock.Sleep(ctx, opt.Idle); err != nil {
		return nil, err
	}
	res.IdleLoad = h.sample().since(idle0)

	h.say("pushing 1.1.0")
	roll0 := h.sample()
	tip, err := h.pushAndCall(ctx, "1.1.0")
	if err != nil {
		return nil, err
	}
	pushed := h.clock.Now()
	if err := h.await(ctx, "1.1.0", "rollout of 1.1.0"); err != nil {
		return nil, fmt.Errorf("%w (Git load meanwhile: %s)", err, h.sample().since(roll0))
	}
	done := h.clock.Now()
	res.RolloutLoad = h.sample().since(roll0)
	res.measureRollout(h.log, tip, pushed, done)
	res.SpecEvaluations, res.SpecLoads = h.specs.evals.Load(), h.specs.calls.Load()
	r, err := h.settled(ctx, "1.1.0")
	if err != nil {
		return nil, err
	}
	res.record(r)
	if h.opt.HeapProfile != nil {
		runtime.GC()
		if err := pprof.Lookup("heap").WriteTo(h.opt.HeapProfile, 0); err != nil {
			return nil, fmt.Errorf("write the heap profile: %w", err)
		}
	}
	h.say("rollout done in %s; stopping agents", res.Rollout)
	h.stopNodes()
	res.AgentErrors = h.agentErrors()
	return res, nil
}

func (h *harness) say(format string, args ...any) {
	if h.opt.Progress != nil {
		fmt.Fprintf(h.opt.Progress, "scale: "+format+"\n", args...)
	}
}

// shared says what the simulated nodes share (the package doc's list).
func (h *harness) shared() []string {
	s := []string{
		"the spec of each commit, evaluated once (a caching agent.SpecLoader; one read-only *spec.Fleet for every node)",
		"one HTTP transport to the Git server (go-git's \"http\" protocol, keep-alive pool)",
	}
	if h.opt.GitCache {
		s = append(s, "(server side, not the nodes') the Git server's ref advertisement, cached until the next push")
	}
	if h.opt.Store == StoreEtcd {
		conns := "one etcd client connection"
		if h.opt.EtcdConns > 1 {
			conns = fmt.Sprintf("%d etcd client connections, round-robin", h.opt.EtcdConns)
		}
		s = append(s, conns+" (each node keeps its own etcdstore.Store: caches, liveness lease, watch)",
			"the rollout record's events, each decoded once (etcdstore.Decoded; each node still reads every key itself)")
		if len(h.opt.EtcdCommand) == 0 {
			s = append(s, "(server side) the process: the etcd server runs in it, its garbage collector working through the nodes' heap (-etcd-process: a process of its own)")
		}
	}
	return s
}

// start makes the fleet repo and starts the servers.
func (h *harness) start() error {
	h.bare = filepath.Join(h.opt.Dir, "fleet.git")
	if _, err := runGit("", "init", "--quiet", "--bare", "--initial-branch=main", h.bare); err != nil {
		return err
	}
	var err error
	if h.git, err = startGit(h.bare, h.opt.GitWorkers, h.opt.GitCache); err != nil {
		return err
	}
	// One pool of keep-alive connections for every node's go-git, sized
	// for the fleet: the default keeps 2 idle connections per host, and
	// 1,000 nodes would then open (and leave in TIME_WAIT) a connection
	// per request. go-git's protocol table is process-wide.
	// At most maxGitConns connections, though: 10,000 nodes each holding
	// one (both ends in this process) ran out of file descriptors at
	// 20,000; a request beyond waits for a connection, as behind a
	// server's accept backlog.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	conns := min(h.opt.Nodes+16, maxGitConns)
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = conns, conns, conns
	client.InstallProtocol("http", githttp.NewClient(&http.Client{Transport: tr}))
	if err := h.serveHealth(); err != nil {
		return err
	}
	if h.opt.Store == StoreEtcd {
		if h.etcd, err = startEtcd(filepath.Join(h.opt.Dir, "etcd"), h.opt.EtcdConns, h.opt.EtcdCommand); err != nil {
			return err
		}
	}
	return nil
}

// pushAndCall pushes version and calls the webhook receivers, if any.
func (h *harness) pushAndCall(ctx context.Context, version string) (plumbing.Hash, error) {
	tip, err := h.push(version)
	if err == nil {
		h.callHooks(ctx)
	}
	return tip, err
}

// push commits the spec with the app at version on main, straight into the
// bare repository (not through the server: the counts are the nodes').
func (h *harness) push(version string) (plumbing.Hash, error) {
	work := filepath.Join(h.opt.Dir, "work")
	if _, err := os.Stat(work); errors.Is(err, os.ErrNotExist) {
		if _, err := runGit("", "clone", "--quiet", h.bare, work); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	spec, message := "package fleet\n", "no app yet"
	if version != "" {
		message = appName + " " + version
		spec = fmt.Sprintf(`package fleet

apps: %s: {
	version: %q
	artifact: url: "https://releases.invalid/%s-\(version).tar.gz"
	rollout: batchSize: %d
	health: http: %q
}
`, appName, version, appName, h.opt.Wave, h.healthURL)
	}
	if err := os.WriteFile(filepath.Join(work, "fleet.cue"), []byte(spec), 0o644); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write the spec: %w", err)
	}
	for _, args := range [][]string{{"add", "fleet.cue"}, {"commit", "--quiet", "-m", message},
		{"push", "--quiet", "origin", "HEAD:refs/heads/main"}} {
		if _, err := runGit(work, args...); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	h.git.invalidate()
	out, err := runGit(work, "rev-parse", "HEAD")
	return plumbing.NewHash(out), err
}

// record copies the rollout's outcome and the nodes recorded failed or
// skipped into res.
func (res *Result) record(r *reconciler.Rollout) {
	res.Outcome, res.PlannedWaves = r.Outcome, len(r.Waves)
	for node, why := range r.Failed {
		res.RecordedFailed = append(res.RecordedFailed, node+": "+why)
	}
	for node, why := range r.Skipped {
		res.RecordedSkipped = append(res.RecordedSkipped, node+": "+why)
	}
	res.waves = r.Waves
	res.measureWaves()
}

func (h *harness) stopNodes() {
	if h.cancel != nil {
		h.cancel()
	}
	h.wg.Wait()
}

func (h *harness) agentErrors() []string {
	h.errMu.Lock()
	defer h.errMu.Unlock()
	var out []string
	for _, err := range h.errs {
		out = append(out, err.Error())
	}
	return out
}

func (h *harness) close() {
	h.stopNodes()
	for _, c := range h.closers {
		c.Close()
	}
	if h.etcd != nil {
		h.etcd.close()
	}
	if h.git != nil {
		h.git.close()
	}
	if h.health != nil {
		h.health.Close()
	}
}

// serveHealth starts the health endpoint every node's check asks.
func (h *harness) serveHealth() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	h.healthURL = "http://" + ln.Addr().String() + "/health"
	h.health = &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	go h.health.Serve(ln) // returns when close closes it
	return nil
}

// load is a snapshot of the counters and the process's resource use.
type load struct {
	at         time.Time
	git        GitCounts
	etcd       int64
	etcdKinds  map[string]int64
	etcdBytes  map[string]int64
	etcdDetail map[string]int64
	cpu, kids  time.Duration // this process (agents, etcd) and its children (git)
	etcdCPU    time.Duration // the etcd server's, when it is a process of its own
}

func (h *harness) sample() load {
	l := load{at: h.clock.Now(), git: h.git.counts()}
	l.git.CachedAds = h.git.adHits()
	if h.etcd != nil {
		l.etcd = h.etcd.requests()
		l.etcdKinds, l.etcdBytes, l.etcdDetail = h.etcd.counters()
		l.etcdCPU = h.etcd.cpu()
	}
	l.cpu, l.kids = rusage(syscall.RUSAGE_SELF), rusage(syscall.RUSAGE_CHILDREN)
	return l
}

func (l load) since(o load) Load {
	d := l.at.Sub(o.at)
	s := d.Seconds()
	g := l.git.minus(o.git)
	return Load{Duration: Seconds(d), Git: g, GitPerSecond: float64(g.Total()) / s,
		Etcd: l.etcd - o.etcd, EtcdPerSecond: float64(l.etcd-o.etcd) / s, EtcdByKind: kindsSince(l.etcdKinds, o.etcdKinds),
		EtcdReplyBytes: kindsSince(l.etcdBytes, o.etcdBytes), EtcdDetail: kindsSince(l.etcdDetail, o.etcdDetail),
		CPU: Seconds(l.cpu - o.cpu), GitCPU: Seconds(l.kids - o.kids), EtcdCPU: Seconds(l.etcdCPU - o.etcdCPU)}
}

// kindsSince is the counts of l less those of o (nil when none).
func kindsSince(l, o map[string]int64) map[string]int64 {
	var d map[string]int64
	for k, n := range l {
		if n -= o[k]; n > 0 {
			if d == nil {
				d = map[string]int64{}
			}
			d[k] = n
		}
	}
	return d
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runGit runs the git CLI with no user or system configuration.
func runGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=scale", "GIT_AUTHOR_EMAIL=scale@example.invalid",
		"GIT_COMMITTER_NAME=scale", "GIT_COMMITTER_EMAIL=scale@example.invalid", "GIT_TERMINAL_PROMPT=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
