// Package dashboard serves `reconciler ui`: a read-only web view of a fleet.
//
// The server never writes: it answers GET and HEAD only (anything else is
// 405), and reads the fleet through a Source that the command line builds
// from the same readers as `status`, `history` and `leases`. A page is plain
// HTML, CSS and JavaScript embedded in the binary (no build step, no CDN);
// it renders every string with textContent, so node names, versions and
// reasons taken from node reports can never become markup.
//
// Invariants:
//   - One goroutine, Run's, reads the Source: on every wake of the Source's
//     watch and every Poll. Each snapshot that differs from the last is
//     pushed to every open page as a server-sent event.
//   - A failed read never blanks the page: the last good snapshot is kept
//     and carries the error, which the page shows as a banner.
//   - The page works under any path prefix: --base-path on the server, or
//     the X-Forwarded-Prefix header a reverse proxy sets after stripping it.
//
// Entry points: New, then Server.Run (the reader loop) and Server.Handler.
package dashboard
