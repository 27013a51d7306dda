// Command demo is `make demo`: a real fleet on this machine doing a rolling
// upgrade and a failed canary that is rolled back by a commit.
//
// It builds reconciler and the example workload (1.0.0, 1.1.0 and a broken
// 1.2.0), signs the releases, creates a bare fleet repo, starts five agents
// on loopback, then drives them with the reconciler CLI, as an operator
// would: `upgrade --push --wait`, `status`, `history`. It cleans up every
// process it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fleetops/reconciler/internal/etcdstore/embedded"
	"github.com/fleetops/reconciler/internal/fleetlab"
)

func main() {
	keep := flag.Bool("keep", false, "keep the demo directory (its logs, states and repo) afterwards")
	useEtcd := flag.Bool("etcd", false, "keep the shared state (reports, rollout records, leases) in an embedded etcd instead of the fleet repo")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *keep, *useEtcd); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const nodes = 5

func run(ctx context.Context, keep, useEtcd bool) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "reconciler-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	step("Building reconciler and the example workload; signing releases 1.0.0, 1.1.0 and a broken 1.2.0")
	lab, err := fleetlab.New(ctx, fleetlab.Options{Dir: dir, Root: root, Progress: indent{},
		Versions: []string{"1.0.0", "1.1.0", "1.2.0"}, Broken: map[string]bool{"1.2.0": true}})
	if err != nil {
		return err
	}
	defer lab.Close()
	repo := filepath.Join(dir, "fleet.git")
	step("Creating the fleet repo %s: app web 1.0.0 on %d nodes", repo, nodes)
	if err := fleetlab.InitRepo(repo, map[string]string{"fleet.cue": fleetSpec(lab)}); err != nil {
		return err
	}
	// shared names the shared state for the agents and the CLI: the fleet
	// repo by default, or an embedded etcd with -etcd.
	var shared []string
	if useEtcd {
		cluster, err := embedded.Start(filepath.Join(dir, "etcd"), 1)
		if err != nil {
			return err
		}
		defer cluster.Close()
		shared = []string{"--shared", cluster.URL()}
		step("Started an embedded etcd at %s: the shared state lives there (specs, upgrades and rollbacks stay in Git)", cluster.URL())
	}
	step("Starting %d agents (one per node, each with its own state dir and port)", nodes)
	var agents []*fleetlab.Agent
	for i := 1; i <= nodes; i++ {
		a, err := lab.StartAgent(fmt.Sprintf("node-%d", i), repo, append([]string{"--poll", "1s", "--lease-ttl", "5s"}, shared...)...)
		if err != nil {
			return err
		}
		fmt.Printf("  %s: workload on 127.0.0.1:%d, agent /healthz on %s, log %s\n", a.Name, a.Port, a.Healthz, a.Log)
		agents = append(agents, a)
	}
	if err := waitServing(ctx, agents, "1.0.0", 2*time.Minute); err != nil {
		return err
	}
	cli := func(args ...string) error { return runCLI(ctx, lab, repo, append(args, shared...)...) }

	step("Rolling upgrade to 1.1.0, batch size 2: reconciler upgrade web 1.1.0 --strategy rolling --batch-size 2 --push --wait")
	if err := cli("upgrade", "web", "1.1.0", "--strategy", "rolling", "--batch-size", "2", "--push", "--wait"); err != nil {
		return err
	}
	step("Canary of the broken 1.2.0: reconciler upgrade web 1.2.0 --strategy canary --push --wait")
	err = cli("upgrade", "web", "1.2.0", "--strategy", "canary", "--push", "--wait")
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("the broken canary should have failed and been rolled back: %v", err)
	}
	fmt.Println("  (exit 1, as expected: the canary failed its health check and was rolled back)")
	if err := waitServing(ctx, agents, "1.1.0", time.Minute); err != nil {
		return err
	}
	step("The fleet repo's history: every upgrade and rollback is a commit")
	out, err := fleetlab.Git(repo, "log", "--format=%h %an: %s%n%(trailers:only,unfold)", "main")
	if err != nil {
		return err
	}
	fmt.Println(indentText(out))
	step("reconciler history web")
	_ = cli("history", "web")
	step("reconciler status web")
	_ = cli("status", "web")
	step("Done in %s; stopping the agents and workloads", time.Since(start).Round(time.Second))
	if keep {
		fmt.Printf("  kept %s\n", dir)
	}
	return nil
}

func fleetSpec(lab *fleetlab.Lab) string {
	var b strings.Builder
	b.WriteString("package fleet\n\n// The demo fleet: five nodes on one machine, one app.\n")
	for i := 1; i <= nodes; i++ {
		region := "eu"
		if i > 3 {
			region = "us"
		}
		fmt.Fprintf(&b, "nodes: \"node-%d\": labels: region: %q\n", i, region)
	}
	fmt.Fprintf(&b, `
apps: web: {
	version: "1.0.0"
	artifact: url: "file://%s/web-\(version).tar.gz"
	rollout: {
		strategy:  "all_at_once"
		batchSize: 2
		canary: {count: 1, monitor: "5s"}
	}
	health: {
		http:       "http://127.0.0.1:${PORT}/health"
		retries:    3
		retryDelay: "500ms"
	}
}
`, lab.Releases)
	return b.String()
}

// waitServing waits until every agent's workload answers version v.
func waitServing(ctx context.Context, agents []*fleetlab.Agent, v string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var behind []string
		for _, a := range agents {
			if got, err := a.Serving(); err != nil || got != v {
				behind = append(behind, a.Name)
			}
		}
		if len(behind) == 0 {
			fmt.Printf("  every node serves %s\n", v)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes %s do not serve %s after %s", strings.Join(behind, ", "), v, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func runCLI(ctx context.Context, lab *fleetlab.Lab, repo string, args ...string) error {
	cmd := exec.CommandContext(ctx, lab.Reconciler, append(args, "--repo", repo)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull)
	return cmd.Run()
}

// step prints a heading, bold on a terminal.
func step(format string, args ...any) {
	bold, plain := "", ""
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		bold, plain = "\033[1m", "\033[0m"
	}
	fmt.Printf("\n%s== "+format+"%s\n", append(append([]any{bold}, args...), plain)...)
}

type indent struct{}

func (indent) Write(p []byte) (int, error) {
	fmt.Print(indentText(string(p)))
	return len(p), nil
}

func indentText(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}
