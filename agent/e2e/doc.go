// Package e2e tests the agent end to end: a real `reconciler agent` process
// (built once per test binary), a local bare fleet repo, signed releases of
// the example workload, and workloads that outlive the agent.
package e2e
