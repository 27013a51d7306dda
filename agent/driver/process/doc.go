// Package process is the default driver: the agent supervises the app's
// process itself and owns its listening sockets.
//
// Sockets. The driver opens every socket the release manifest lists and
// passes them to the workload with systemd's convention: fds from 3 in the
// manifest's order, LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID. Go cannot set
// a variable in the child after fork, so the workload is started through a
// one-line shell shim (`LISTEN_PID=$$ exec "$0" "$@"`; the shell execs, so
// the pid is the workload's). Options.Shell "-" turns the shim off; LISTEN_PID
// is then absent and the workload must accept that (the example does).
//
// Hot swap. Switch starts the new version on the same sockets, waits for the
// HealthFunc, then sends SIGTERM to the old one, waits its drain timeout and
// sends SIGKILL. No connection is refused: the socket never stops listening.
// A new version that exits or is not healthy in time is stopped and the old
// one keeps serving.
//
// Survival. Workloads run in their own session (no signal to the agent
// reaches them) and write to <LogDir>/<app>.log, not to the agent's pipes.
// Every change of what runs is reported through Options.OnChange as a
// driver.Running whose Data records the current process, a candidate being
// started and processes being drained (pid and start time, so a reused pid is
// never mistaken for the workload). Adopt reads that record after an agent
// restart: it stops a candidate whose health was never confirmed, finishes
// stopping a drained one, adopts the current process and takes its sockets
// back with pidfd_getfd so later swaps stay hot; a current process that died
// meanwhile is started again.
//
// Crashes. A current process that exits without being asked is restarted
// with exponential backoff (Options.RestartDelay up to MaxRestartDelay).
package process
