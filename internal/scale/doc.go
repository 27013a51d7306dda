// Package scale is the scale harness (make scale, cmd/reconciler-scale): it
// runs N simulated nodes in one process, each with the real agent
// (agent.New, Run), the real rollout coordinator (agent/rollout) and the
// real store clients, against real servers on loopback: `git http-backend`
// serving the fleet repo (and, with the Git store, the shared state under
// refs/reconciler/*), or an embedded etcd for the shared state. Only the
// node's workload is simulated: the driver's switch and the installer's
// download take a configured time on the clock and run nothing.
//
// It pushes a new version and measures what the fleet did: push to first
// switch and to the last node learning of it (p50, p99 of node reaction),
// rollout time against the ideal (waves x switch time), per-wave overhead,
// Git and etcd requests/s idle and during the rollout, the largest number of
// nodes switching at once, nodes recorded failed, CPU and memory per node.
//
// Invariants, checked by Check after every run (a run that breaks one is an
// error, not a figure): no more nodes switch at once than the wave size, no
// node that did not fail is recorded failed, every node converges.
//
// What the simulated nodes share, because it is immutable or a connection
// any process would pool (Shared lists it, and every report prints it):
//
//   - the spec of a commit, evaluated once (a caching agent.SpecLoader keyed
//     by the spec files' content); every node gets the same read-only
//     *spec.Fleet;
//   - one HTTP transport for go-git (a keep-alive pool to the Git server),
//     installed as go-git's "http" protocol for the process;
//   - with the etcd store, one etcd client connection, or EtcdConns
//     round-robin (etcdstore Options.Client); each node still has its own
//     Store, with its own caches, liveness lease and watch;
//   - with the etcd store, the rollout record's events, each decoded once
//     (etcdstore.Decoded: a key is written once, so every node that reads
//     it at that revision gets the same event). Each node still reads
//     every key from etcd itself; only the decoding and the memory are
//     shared.
//
// Not shared: each node has its own state directory, *fleetrepo.Desired
// (its own in-memory clone of the fleet repo), shared-state handle,
// coordinator, Prometheus registry and goroutines. Releases are not
// downloaded: the simulated installer writes a release.json after the
// install time, with no artifact and no signature check.
//
// Entry point: Run.
package scale
