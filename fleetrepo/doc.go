// Package fleetrepo reads and writes the fleet repo, the only infrastructure
// reconciler has: the desired state (a branch of CUE specs) and the shared
// state of the agents (refs/reconciler/*: node reports, rollout records,
// leases). docs/shared-state.md describes the refs and formats.
//
// # Two handles
//
// OpenDesired returns a *Desired for the tracked branch; OpenShared a
// *Shared for refs/reconciler/*. Each has its own URL and local cache, so a
// large fleet can keep its shared state in a separate repository: every ref
// in a repository costs every poller of it, and an idle agent should poll
// the desired state cheaply and the shared state rarely.
//
//	d, err := fleetrepo.OpenDesired(ctx, fleetrepo.DesiredOptions{URL: url, CacheDir: dir})
//	tip, err := d.Fetch(ctx)             // last accepted tip; *NotDescendantError on a force-push back
//	err = d.View(func(r *git.Repository) error { fleet, err = spec.LoadCommit(r, tip, "."); return err })
//	go d.Watch(ctx, func() { select { case wake <- struct{}{}: default: } })
//
//	sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: url, Identity: fleetrepo.Identity{Name: node}})
//	err = sh.WriteReport(ctx, report)    // refs/reconciler/nodes/<node>
//	inv, err := sh.Reports(ctx)          // every node's report
//	err = sh.Append(ctx, app, decide)    // refs/reconciler/rollouts/<app>, one commit per event
//	l, err := sh.Acquire(ctx, app, slot, node, rollout, ttl) // refs/reconciler/leases/<app>/<slot>
//	l, err = sh.Renew(ctx, l)            // ErrLeaseLost after a takeover
//	err = sh.Release(ctx, l)
//
// URLs: a path or file:// (a repository on this machine, watched with
// fsnotify), http(s)://, ssh:// or user@host:path (polled). Credentials come
// in the options (AuthFromEnv builds them from environment variables).
// CacheDir "" keeps a handle's cache in memory (one-shot commands); agents
// give each handle a directory, which also remembers the accepted tip.
//
// # The desired state
//
//	(*Desired).Fetch(ctx) (plumbing.Hash, error)        tip, refusing non-descendants
//	(*Desired).Accepted() plumbing.Hash                 last accepted tip
//	(*Desired).Repository() *git.Repository             the cache, for reading trees
//	(*Desired).View(func(*git.Repository) error) error  the same, locked against fetches
//	(*Desired).CommitObject(h) (*object.Commit, error)
//	(*Desired).Watch(ctx, wake func()) error            blocks until ctx is done
//	(*Desired).Commit(ctx, CommitRequest) (plumbing.Hash, error)  CAS on the branch
//	(*Desired).EditApp(ctx, AppChange) (plumbing.Hash, error)     fields of one app
//	(*Desired).SetVersion(ctx, expect, app, version, reason, author)
//	(*Desired).SetPaused(ctx, expect, app, paused, reason, author)
//	(*Desired).Rollback(ctx, RollbackRequest) (plumbing.Hash, error)
//	(*Desired).AppVersion(commit, app) (string, error)
//	(*Desired).Log(ctx, LogOptions) ([]Change, error)  upgrades and rollbacks, newest first
//	SetField(src, app, "rollout.batchSize", 5) ([]byte, error)     byte-splice a CUE value
//	FindAppFile(tree, app) (string, error)
//	Trailers, ParseTrailers                             Reconciler-App, -From, -To, -Reason, -Node, -Rollback-Of
//
// # The shared state
//
//	(*Shared).WriteReport(ctx, reconciler.NodeReport) error
//	(*Shared).Reports(ctx) (map[string]reconciler.NodeReport, error)
//	(*Shared).Record(ctx, app) ([]reconciler.Event, error)
//	(*Shared).Append(ctx, app, decide func([]reconciler.Event) (*reconciler.Event, error)) error
//	(*Shared).Acquire(ctx, app, slot, holder, rollout, ttl) (reconciler.Lease, error)
//	(*Shared).Renew(ctx, lease) (reconciler.Lease, error)
//	(*Shared).Release(ctx, lease) error
//	(*Shared).Validity(lease) time.Duration             how long the holder may still act
//	(*Shared).Break(ctx, app, slot) (reconciler.Lease, error)
//	(*Shared).Leases(ctx, app) ([]reconciler.Lease, error)  app "" = every app
//	(*Shared).LeaseHistory(ctx, app, slot, limit) ([]reconciler.Lease, error)  newest first
//	(*Shared).Watch(ctx, wake func()) error
//
// # Compare-and-swap
//
// Every write to a shared ref, and every commit to the tracked branch, is a
// compare-and-swap: a push naming the ref's expected old value, which
// git-receive-pack applies under the ref's lock (any Git server over HTTP or
// SSH, and a local repository through go-git's file transport, which runs
// the git binaries). Of concurrent writers exactly one wins; the others get
// a *ConflictError (errors.Is ErrConflict), decided by re-reading the ref.
// go-git's in-process server does not compare old values: never use it.
//
// # Leases
//
// A lease's commit id is its token; each renewal makes a new commit, so a
// new token. Expiry is never computed from times written by other nodes:
// each Shared handle measures, on its own monotonic clock, how long it has
// seen each lease unchanged (Lease.Unchanged), and a held lease unchanged for
// its TTL is expired for that observer, which may then take it over. The
// holder, for its part, counts its validity from just before it sent its
// last write (Validity), so it stops acting before any observer can take over.
//
// # Errors
//
// Errors name the ref and the repository and are typed by what the caller
// should do: *TransientError (IsTransient): retry with jittered backoff;
// *ConflictError: re-read and decide again; *NotDescendantError: wait for
// the branch to move forward; *UntrustedError (the DesiredOptions.Verifier,
// trust.Policy, refused the tip's signatures): wait for a tip whose path
// verifies; ErrRejected (a hook, a protected branch,
// missing rights), refused credentials and a missing repository: a person
// must act; ErrLeaseHeld, ErrLeaseLost, ErrSuperseded, ErrAlreadyRolledBack:
// the state says no.
//
// Handles are safe for concurrent use; operations on one handle are
// serialized.
package fleetrepo
