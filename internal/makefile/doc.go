// Package makefile holds the tests of the repository's Makefile, the first
// thing a new engineer runs: that `make help` says what each target does
// (what `make build` builds), that `make demo` speaks within seconds on a
// fresh clone, and that `make test-unit` is the -short tier while `make
// test` stays the full suite. It has no code of its own.
package makefile
