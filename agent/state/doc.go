// Package state is the agent's local state in its state directory: per app,
// the active and previous versions, the installed versions, what the driver
// runs (pids and driver data, for adoption), the last error, a version that
// failed (not retried until the target changes) and the step in progress.
//
// Invariant: state.json on disk is always a complete, valid document. Every
// change is written to a temporary file in the same directory, synced,
// renamed over state.json, and the directory is synced; a killed agent
// finds either the state before a change or the state after it.
//
// The step journal: before a switch the agent records Step{Op, From, To};
// after it, the outcome and no Step. An agent that finds a Step on start
// was killed mid-step: drivers settle their own half-done work on Adopt (the
// process driver keeps its candidate and draining processes in Running.Data)
// and the agent clears the Step and converges again.
//
// Entry point: Open.
package state
