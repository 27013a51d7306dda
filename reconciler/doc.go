// Package reconciler holds the pure rollout logic: the wave planner and the
// rollout decision engine.
//
// Nothing here does I/O or reads the clock: every function takes what it
// decides from (app specs, the node inventory, node reports, rollout records,
// leases, now) and returns a result, so the whole of the rollout logic is
// table-tested. Agents and the command line do the acting.
//
// Entry points: PlanWaves (plan.go) orders the nodes an app targets into
// waves; Decide (decide.go) is the rollout engine, each agent's next step,
// table-tested in decide_test.go and run over whole rollouts in sim_test.go;
// StatusOf (status.go) is what `reconciler status` shows; Diff (diff.go)
// what a change would do. The protocol they implement: docs/design.md and
// docs/rollouts.md.
package reconciler
