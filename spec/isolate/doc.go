// Package isolate evaluates a fleet's spec files in a child process, under a
// wall-clock deadline and a memory limit, so that a hostile spec pushed to
// the fleet repo costs an agent a bounded amount of CPU and memory and is
// refused like any invalid spec.
//
// Why a process: CUE's evaluation cannot be interrupted, and a short
// comprehension can make it quadratic (docs/spec.md, "Limits"): a 200-byte
// file declaring 100,000 nodes evaluated for about a minute and took
// 0.5-0.7 GB. Only a process can be stopped mid-evaluation and have its
// memory bounded by the kernel.
//
// Entry points: Loader.LoadSpec, in the agent (the parent), and Serve, in
// the child (the hidden command "reconciler __eval-spec"). The child reads
// one request (the files, as name -> bytes, and the limits) as JSON on
// stdin, sets its limits (RLIMIT_AS, RLIMIT_CPU, debug.SetMemoryLimit),
// runs spec.LoadFiles and writes the fleet or the problems as JSON on
// stdout. Problems keep their file:line:col; a fleet decoded by the parent
// equals the one spec.LoadFiles returns in-process.
//
// Invariant: the parent never waits longer than Timeout (plus a second for
// the child to die), and the child never maps more than Memory beyond what
// it had mapped when it began to evaluate.
package isolate
