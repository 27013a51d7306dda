// Package health checks that a version of an app works: an HTTP endpoint
// (2xx, and when the body is JSON its "status" compared with the required
// status), a TCP connect, or a command that exits 0; with retries.
//
// Entry point: Check.Run. A Check that names the expected Version treats an
// answer from another version (the old process still serving on a shared
// socket during a hot swap) as "ask again", not as a failure: that answer
// says nothing about the version being checked.
//
// Invariant: Run returns nil only after an attempt that passed; it never
// waits past its context.
package health
