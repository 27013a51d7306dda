// Package etcdstore keeps the fleet's shared state (node reports, rollout
// records, lease slots) in etcd instead of the fleet repo's
// refs/reconciler/*: the store for fleets that outgrow one Git server. The
// desired state (specs, every upgrade and rollback commit) stays in Git.
//
// A *Store is what *fleetrepo.Shared is to the coordinator
// (rollout.Shared), the agent (its reporter and shared-state watch) and the
// CLI, with the same semantics and the same typed errors; the conformance
// suite in internal/storetest holds every store to one script.
//
//   - A lease slot is one key; its mod revision is the lease's token and
//     fencing token. Acquire, Renew, Release and Break are transactions on
//     that revision (absent: create revision 0). Expiry is observed as on
//     Git: each Store remembers, on its own clock, when it first saw a slot
//     at its current revision.
//   - A rollout record is append-only: each event is its own key,
//     rollouts/<app>/<seq>, written by a transaction that requires the key
//     to be new; a lost race re-reads and calls decide again. A node's
//     own outcome may land past what decide saw (AppendCommuting).
//   - Every event but a node_done also rewrites its app's wake key,
//     wakes/<app>, in the same transaction: Watch follows those.
//   - A node report is one key, written with a liveness key bound to an
//     etcd lease this Store keeps alive: when the agent dies, the liveness
//     key expires and readers mark its report Stale.
//   - Watch wakes the agent within milliseconds of a change to a wake key
//     or a lease (etcd watches), instead of the Git store's polling.
//
// The key layout is in docs/shared-state.md ("etcd"). Entry point: Open.
package etcdstore
