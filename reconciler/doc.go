// Package reconciler holds the pure rollout logic: the wave planner and the
// rollout decision engine.
//
// Nothing here does I/O or reads the clock: every function takes what it
// decides from (app specs, the node inventory, node reports, rollout records,
// leases, now) and returns a result, so the whole of the rollout logic is
// table-tested. Agents and the command line do the acting.
//
// Entry points: PlanWaves orders the nodes an app targets into waves; the
// rollout engine (rollout.go) decides each agent's next step.
package reconciler
