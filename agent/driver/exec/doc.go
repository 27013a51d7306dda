// Package exec is the driver for releases that run themselves: the
// release's own hooks (install, activate, rollback, health in release.json)
// start, switch and check it, for systemd units, containers and the like.
//
// Each hook is an argv whose first element, when it holds a slash, is
// relative to the release directory; it runs in that directory, with a
// timeout (Options.HookTimeout), the agent's environment, the manifest's
// env, and:
//
//	RECONCILER_HOOK              install | activate | rollback | health
//	RECONCILER_APP, RECONCILER_VERSION, RECONCILER_RELEASE_DIR
//	RECONCILER_PREVIOUS_VERSION, RECONCILER_PREVIOUS_DIR   ("" on a first install)
//
// Switch runs install, activate, the health hook (when there is one) and
// then the agent's HealthFunc. When activate or a health check fails, the
// new release's rollback hook runs (or, without one, the previous release's
// activate hook), so the previous version is active again. Stop runs the
// rollback hook with no previous version: it should deactivate the app.
// Hooks must be idempotent: an agent killed mid-switch runs them again.
package exec
