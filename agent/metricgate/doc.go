// Package metricgate evaluates an app's metric gates (health.metrics in the
// fleet spec) against its Prometheus server: after each node's switch,
// every query is asked every interval for its `for`, and during a canary's
// monitor once per interval. Entry points: (*Gate).Watch and (*Gate).Check.
//
// Invariant: a gate passes only on a measurement. Every series a query
// returns must be within the metric's bounds (a NaN is out of every bound);
// a query that returns no series, or a Prometheus that does not answer, is
// asked again within the interval and then fails the gate, saying which
// (a gate that cannot measure must not let a version through). A query
// Prometheus refuses (a PromQL error) fails at once. Every failure wraps
// ErrFailed and is a *Failure naming the metric, the query, the value and
// the bound.
package metricgate
