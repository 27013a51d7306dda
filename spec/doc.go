// Package spec is the fleet repo's schema and loader: the CUE schema embedded
// in the binary (schema.cue), loading a fleet from a directory or a Git
// commit's tree, and validation errors that name file, line and column.
//
// Entry points: LoadDir, LoadCommit and LoadFiles return a *Fleet with
// templates resolved and defaults applied, or *Errors listing every problem
// found (not only the first), sorted by position, one per line as
// "file:line:col: message". Other errors (a missing directory, a commit that
// is not there) name what could not be read.
//
// Invariants: a Fleet returned without error has passed every check of the
// schema (docs/spec.md); each load builds its own cue.Context, so a
// long-running agent that reloads on every commit does not accumulate memory.
package spec
