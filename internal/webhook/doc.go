// Package webhook receives push webhooks from Git hosts and wakes the
// agent at once for a push to its tracked branch, so that a merge deploys
// in the time a fetch takes instead of at the next poll.
//
// Providers, told apart by their headers, each authenticated before the
// body is read as JSON (every compare constant-time):
//
//   - GitHub: X-GitHub-Event, X-Hub-Signature-256: sha256=<hex HMAC-SHA256>.
//   - GitLab: X-Gitlab-Event, X-Gitlab-Token: the secret itself.
//   - Gitea (and Forgejo): X-Gitea-Event, X-Gitea-Signature: <hex HMAC-SHA256>
//     (checked before GitHub's headers, which Gitea sends too).
//   - Bitbucket Cloud: X-Event-Key, X-Hub-Signature: sha256=<hex HMAC-SHA256>.
//
// Answers: 202 {"result":"woken"} for a push to the tracked branch; 200
// {"result":"ignored","reason":...} for other branches, tags and other
// events (so the host does not mark the hook failing); 401 for a missing
// or bad signature or token; 405 for a method other than POST; 413 for a
// body over Options.MaxBody; 400 for a push whose JSON does not parse.
//
// The webhook only wakes: the agent then fetches the branch and applies
// what it verifies, as on any poll. A forged wake therefore costs a fetch
// at most; the signature keeps strangers from making the agent fetch.
//
// Entry point: New listens; (*Receiver).Watch serves until ctx ends, and
// is an agent.Watcher (agent.Config.Wakers).
package webhook
