// Package spec is the fleet repo's schema and loader: the CUE schema embedded
// in the binary, loading a fleet from a directory or a Git commit's tree, and
// validation errors that name file, line and column.
//
// Entry points: LoadDir and LoadCommit return a *Fleet with defaults applied,
// or an error listing every problem found.
package spec
