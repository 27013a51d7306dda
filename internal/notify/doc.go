// Package notify tells people and systems outside the fleet what its
// rollouts do: every rollout record event becomes one or more CloudEvents
// 1.0 (type dev.reconciler.rollout.<event>, subject the app), delivered by
// HTTP POST to the targets in the agent's local configuration, in
// structured mode (Content-Type: application/cloudevents+json), or as a
// Slack-compatible {"text": ...} message.
//
// Invariants:
//
//   - Once per fleet: an event is sent by the agent that appended its
//     record event (Recorder wraps the shared state's Append), so the N
//     agents of a fleet do not send it N times. A rollback commit is
//     announced by the agent that wrote it (its rolled_back event).
//   - At least once, with stable ids: the CloudEvents of a record event are
//     staged in the outbox (a directory in the agent's state dir, written
//     atomically) before the append is attempted, queued once it
//     succeeded, and removed from a target's queue only after that target
//     answered 2xx. A restart resolves staged entries against the record
//     (queued when the event is there, dropped when not). A receiver may
//     see an id again after an agent restart or a lost answer; the id is
//     derived from the record event, so it dedupes on (source, id).
//   - Order per target: a target's queue is delivered oldest first; a
//     failing target is retried with capped backoff and delays only itself.
//
// Entry points: FromRecord maps a record event to CloudEvents (the
// `reconciler events` command prints the same ones); Open returns the
// Outbox; NewRecorder wraps a store's Append; (*Outbox).Run delivers.
// Signatures: X-Reconciler-Signature: sha256=<hex of HMAC-SHA256(secret,
// body)> on every POST when a secret is configured (Sign, Verify).
package notify
