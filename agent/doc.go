// Package agent is the node agent: it converges one node to the fleet repo.
//
// Entry points: New(Config) then (*Agent).Run, or Run(ctx, Config). The loop
// in Run is one select: on a wake (the fleet repo's branch moved, or the poll
// ticker) it runs Reconcile, one pass:
//
//  1. fetch the tip of the tracked branch and load its spec (spec.ReadCommit,
//     then Config.SpecLoader: in-process, or in a child process under a
//     deadline and a memory limit, spec/isolate);
//  2. for each app targeting this node, ask the Coordinator which version to run
//     now (by default the spec's: SpecCoordinator), and Converge to it: install the
//     signed release (release.Fetcher.Install into <state>/releases/<app>/<v>,
//     reused when present), switch through the release's driver with the
//     spec's health check, and on failure keep (or restore) the previous
//     version locally;
//  3. stop apps that no longer target this node;
//  4. write the node report (Reporter) and serve it on /healthz, with
//     Prometheus metrics on /metrics.
//
// Invariants:
//   - A spec that does not load, or a release that does not verify, changes
//     nothing: the node keeps what it runs and reports why.
//   - A failed switch leaves the previous version running (the drivers'
//     invariant); the failed version is remembered and not retried until the
//     decided version changes.
//   - Every change is in the local state (package state) before the agent
//     acts on it; a restarted agent adopts the workloads it finds there and
//     settles a step it was killed in.
//   - Workloads outlive the agent: stopping the agent (Run returning) never
//     stops them.
//
// The seam for fleet coordination is Coordinator: waves and leases decide when
// this node may move; Converge is the reusable per-app step that moves it.
package agent
