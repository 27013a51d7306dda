// Command reconciler-scale runs the scale harness (internal/scale): N
// simulated nodes in one process, each with the real agent, rollout
// coordinator and store client, against a real `git http-backend` and,
// with -store etcd, a real embedded etcd; it prints the figures of a
// rolling upgrade (docs/scale.md). It exits 1 when the run does not
// complete or breaks an invariant (more nodes switching at once than the
// wave size, a node recorded failed), 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/internal/scale"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == serveEtcdArg { // -etcd-process: this binary as the server
		if err := scale.ServeEtcd(os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "reconciler-scale %s: %v\n", serveEtcdArg, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// serveEtcdArg runs this binary as the etcd server of a run with
// -etcd-process (scale.ServeEtcd), given the data directory.
const serveEtcdArg = "-serve-etcd"

// Main parses args, runs the harness and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reconciler-scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt scale.Options
	fs.IntVar(&opt.Nodes, "nodes", 100, "simulated nodes")
	fs.IntVar(&opt.Wave, "wave", 0, "wave (batch) size of the rollout (default nodes/10)")
	fs.DurationVar(&opt.Switch, "switch", 500*time.Millisecond, "simulated switch time")
	fs.DurationVar(&opt.Install, "install", 100*time.Millisecond, "simulated install (download) time")
	fs.StringVar(&opt.Store, "store", scale.StoreGit, "shared state: git or etcd (the specs are always on Git)")
	fs.DurationVar(&opt.Idle, "idle", 30*time.Second, "how long idle load is measured, once every node runs")
	fs.DurationVar(&opt.Timeout, "timeout", 10*time.Minute, "bound on the first deployment, and on the rollout")
	fs.DurationVar(&opt.Poll, "poll", 0, "each agent's --poll (default the agent's, 30s)")
	fs.DurationVar(&opt.GitPoll, "git-poll", 0, "ref-listing interval of the tracked branch and the Git shared state (default fleetrepo's: 10s and 60s)")
	fs.DurationVar(&opt.ActivePoll, "active-poll", 0, "how often a node waiting in a rollout re-reads the shared state (default rollout's: 2s Git, 5s etcd)")
	fs.DurationVar(&opt.LeaseTTL, "lease-ttl", 0, "each coordinator's lease TTL (default rollout's: 20s)")
	fs.IntVar(&opt.Webhooks, "webhook", 0, "how many agents run the push webhook receiver, which the harness calls after each push as a Git host does (0: none; the agents poll, and the first to learn of a push publishes the etcd tip key)")
	fs.BoolVar(&opt.GitCache, "git-cache", false, "answer repeated ref advertisements from memory until the next push (a faster Git server; requests are still counted)")
	fs.IntVar(&opt.GitWorkers, "git-workers", 8, "git http-backend processes running at once")
	fs.DurationVar(&opt.LivenessTTL, "liveness-ttl", 0, "with -store etcd: each node's liveness lease TTL, the agent's --liveness-ttl (default 30s)")
	fs.IntVar(&opt.EtcdConns, "etcd-conns", 1, "etcd client connections the nodes share, round-robin (a real node has its own)")
	etcdProcess := fs.Bool("etcd-process", false, "run the etcd server as a process of its own (this binary, "+serveEtcdArg+"), not inside the one of the nodes: its own heap and garbage collector, as a real server has")
	output := fs.String("output", "text", "text or json")
	dir := fs.String("dir", "", "working directory (default a new one under /dev/shm, else $TMPDIR; removed afterwards)")
	progress := fs.Bool("progress", true, "print a line per phase on stderr")
	verbose := fs.Bool("v", false, "every agent's log on stderr (info and above)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (host:port) during the run, to profile a phase of a long run")
	heapProfile := fs.String("memprofile", "", "write a heap profile to this file once the rollout is done, before the agents stop (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "reconciler-scale: -output %q: want text or json\n", *output)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "reconciler-scale: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *progress {
		opt.Progress = stderr
	}
	if *verbose {
		opt.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if *etcdProcess {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "reconciler-scale: -etcd-process: %v\n", err)
			return 1
		}
		opt.EtcdCommand = []string{exe, serveEtcdArg}
	}
	var err error
	if opt.Dir, err = workDir(*dir); err != nil {
		fmt.Fprintf(stderr, "reconciler-scale: %v\n", err)
		return 1
	}
	defer os.RemoveAll(opt.Dir)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "reconciler-scale: -cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if *pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index) // the named profiles: heap, goroutine, ...
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "reconciler-scale: -pprof: %v\n", err)
			return 1
		}
		go srv.Serve(ln) //nolint:errcheck // ends with Close below: ErrServerClosed
		defer srv.Close()
	}
	if *heapProfile != "" {
		f, err := os.Create(*heapProfile)
		if err != nil {
			fmt.Fprintf(stderr, "reconciler-scale: -memprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		opt.HeapProfile = f
	}
	res, err := scale.Run(ctx, opt)
	if res != nil {
		write := res.WriteText
		if *output == "json" {
			write = res.WriteJSON
		}
		if werr := write(stdout); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err == nil && res != nil {
		err = res.Check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "reconciler-scale: %v\n", err)
		return 1
	}
	return 0
}

// workDir makes the run's directory: on tmpfs when there is one, so that
// 10,000 nodes' state writes (each fsynced) measure the agents, not the disk.
func workDir(dir string) (string, error) {
	if dir != "" {
		return os.MkdirTemp(dir, "scale-")
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "reconciler-scale-"); err == nil {
			return d, nil
		}
	}
	return os.MkdirTemp("", "reconciler-scale-")
}
