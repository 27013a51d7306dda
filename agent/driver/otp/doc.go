// Package otp is the driver for Erlang/OTP releases built with relx: code is
// swapped inside the running VM by OTP's release_handler, driven through the
// release's own start script (bin/<rel>), so a hot upgrade keeps the VM's OS
// pid and the processes' state.
//
// The artifact. A reconciler release with driver "otp" holds release.json and
// the relx tarball that `rebar3 tar` makes, at the artifact's root, named
// <rel>-<version>.tar.gz. The relx release name <rel> is the manifest's app,
// unless command is ["bin/<rel>"]. release.json "env" (and the agent's
// per-node variables) reach the VM and every call of bin/<rel>: that is where
// vm.args.src gets the node name and cookie. See docs/otp.md.
//
// First install. The tarball is unpacked into a new release root under
// Options.Dir/<app>/, the VM is started with `bin/<rel> daemon` (run_erl, so
// the VM outlives the agent) and the HealthFunc is called. An unhealthy first
// install is stopped and removed.
//
// Upgrade. The tarball is copied to <root>/releases/<rel>-<version>.tar.gz
// and unpacked by release_handler. When release_handler:check_install_release
// accepts it (a relup leads from the running version), Switch runs `bin/<rel>
// upgrade <version> --no-permanent`, calls the HealthFunc, and only then makes
// the new version permanent (`bin/<rel> install <version>`). A VM that
// reboots meanwhile therefore boots the old version. When no relup leads to
// the new version, the VM is restarted: the old VM stops, the new release is
// unpacked into a fresh root and started, and the old root is removed once the
// new one is healthy.
//
// Failure. A hot upgrade that fails (the upgrade command or the health check)
// goes back with `bin/<rel> downgrade <old>`, again inside the running VM; when
// that fails too, or the VM died, the VM is restarted on the permanent (old)
// release. A restart-based upgrade that fails stops the new VM and starts the
// old root again. Either way the previous version runs when Switch returns an
// error (the invariant of package driver).
//
// Reporting. Releases returns release_handler's view of the VM (versions and
// permanent/current/old/unpacked), for node reports.
//
// Entry point: New.
package otp
