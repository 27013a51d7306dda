package fleetrepo

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/fleetops/reconciler/internal/clock"
)

// Clock is the time source of a handle: any clock.Clock (clock.System,
// *clock.Fake) is one. Lease expiry is measured on it, so it must be
// monotonic: time.Now values carry a monotonic reading, and Sub uses it.
type Clock interface {
	Now() time.Time
}

// Identity is who writes commits: a person or a node.
type Identity struct {
	Name  string // e.g. "node-eu-1" or "Ada Lovelace"
	Email string // default "<name>@reconciler.invalid"
}

func (id Identity) signature(now time.Time) object.Signature {
	email := id.Email
	if email == "" {
		email = strings.ReplaceAll(id.Name, " ", ".") + "@reconciler.invalid"
	}
	return object.Signature{Name: id.Name, Email: email, When: now}
}

// DesiredOptions configure OpenDesired. Zero values take the defaults named.
type DesiredOptions struct {
	// URL of the fleet repo: a path or file:// (a repository on this
	// machine), http(s)://, ssh:// or user@host:path. Required.
	URL string
	// Branch tracked. Default "main".
	Branch string
	// CacheDir holds the local bare cache; created when missing. Default ""
	// keeps the cache in memory (fine for one-shot commands).
	CacheDir string
	// Auth for http(s) and ssh; nil for none. See AuthFromEnv.
	Auth transport.AuthMethod
	// Timeout bounds one exchange with the repository (a ref listing, a
	// push; a fetch gets 5 times it): a server that accepts and never
	// answers fails it as a network error, retried. Default DefaultTimeout.
	Timeout time.Duration
	// Identity commits are written as (Author and Committer). Default "reconciler".
	Identity Identity
	// PollInterval between ref listings when watching. Default 10s for
	// remote repositories and 30s (a safety net under fsnotify) for local
	// ones; negative: no polling (fsnotify only, for a local repository),
	// for a caller that reads the branch on its own schedule (the agent).
	PollInterval time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Clock; default the system clock.
	Clock Clock
	// Verifier, when set, must accept every new tip before it is accepted
	// (trust.Policy): a refused tip is an *UntrustedError and the last
	// accepted one stays. Nil: any tip that descends from the last accepted.
	Verifier TipVerifier
	// Signer, when set, signs every commit written to the tracked branch
	// (trust.KeySigner, trust.ProgramSigner). Nil: commits are unsigned.
	Signer CommitSigner
}

// SharedOptions configure OpenShared. Zero values take the defaults named.
type SharedOptions struct {
	// URL of the repository holding refs/reconciler/*; usually the fleet
	// repo itself, or a separate repository for large fleets. Required.
	URL string
	// CacheDir holds the local bare cache; "" keeps it in memory.
	CacheDir string
	// Auth for http(s) and ssh; nil for none.
	Auth transport.AuthMethod
	// Timeout bounds one exchange with the repository, as DesiredOptions'.
	Timeout time.Duration
	// Identity commits are written as. Default "reconciler".
	Identity Identity
	// PollInterval between ref listings when watching. Default 5m: an idle
	// agent needs nothing from the shared state, and a node waiting in a
	// rollout reads it at the coordinator's own pace (rollout.Options.ActivePoll);
	// negative: no polling. A repository on this machine is watched with
	// fsnotify besides.
	PollInterval time.Duration
	// ReportRefresh: WriteReport skips a report that differs from the last
	// one written only in Time, unless the last is older than this (a
	// skipped report costs no request). Default 10m: every refresh is a
	// push per node; negative: never rewrite an unchanged report.
	ReportRefresh time.Duration
	// Instance names this handle in its report commits (the
	// Reconciler-Instance trailer). An agent passes one kept in its state
	// directory, so that after a restart it recognises its own reports;
	// default: random per handle.
	Instance string
	// Logger; default discards.
	Logger *slog.Logger
	// Clock; default the system clock. Lease expiry is measured on it.
	Clock Clock
}

// DefaultReportRefresh is how often an unchanged node report is written
// again to Git (SharedOptions.ReportRefresh): it shows the node alive, and
// tells a second agent with the node name that this one runs.
const DefaultReportRefresh = 10 * time.Minute

func (o *DesiredOptions) validate() error {
	if o.URL == "" {
		return errors.New("open desired state: no repository URL")
	}
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Identity.Name == "" {
		o.Identity.Name = "reconciler"
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	return nil
}

func (o *SharedOptions) validate() error {
	if o.URL == "" {
		return errors.New("open shared state: no repository URL")
	}
	if o.Identity.Name == "" {
		o.Identity.Name = "reconciler"
	}
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Minute
	}
	if o.ReportRefresh == 0 {
		o.ReportRefresh = DefaultReportRefresh
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	return nil
}

// AuthFromEnv builds the credentials for url from environment variables read
// through getenv (the library never reads the environment itself):
//
//   - http(s): RECONCILER_GIT_TOKEN (sent as the password of user
//     RECONCILER_GIT_USERNAME, default "git"), or RECONCILER_GIT_USERNAME with
//     RECONCILER_GIT_PASSWORD. Nothing set: anonymous.
//   - ssh: RECONCILER_GIT_SSH_KEY (a private key file, passphrase in
//     RECONCILER_GIT_SSH_KEY_PASSPHRASE), else the agent at SSH_AUTH_SOCK.
//     The user is the URL's, default "git". Host keys are checked against
//     the usual known_hosts files.
//   - local paths and file://: none.
func AuthFromEnv(url string, getenv func(string) string) (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, fmt.Errorf("parse repository URL %s: %w", url, err)
	}
	switch ep.Protocol {
	case "http", "https":
		return httpAuth(getenv), nil
	case "ssh":
		return sshAuth(ep.User, getenv)
	}
	return nil, nil
}

func httpAuth(getenv func(string) string) transport.AuthMethod {
	user, pass := getenv("RECONCILER_GIT_USERNAME"), getenv("RECONCILER_GIT_PASSWORD")
	if tok := getenv("RECONCILER_GIT_TOKEN"); tok != "" {
		pass = tok
		if user == "" {
			user = "git"
		}
	}
	if user == "" && pass == "" {
		return nil
	}
	return &http.BasicAuth{Username: user, Password: pass}
}

func sshAuth(user string, getenv func(string) string) (transport.AuthMethod, error) {
	if user == "" {
		user = "git"
	}
	if key := getenv("RECONCILER_GIT_SSH_KEY"); key != "" {
		auth, err := ssh.NewPublicKeysFromFile(user, key, getenv("RECONCILER_GIT_SSH_KEY_PASSPHRASE"))
		if err != nil {
			return nil, fmt.Errorf("load ssh key %s: %w", key, err)
		}
		return auth, nil
	}
	if getenv("SSH_AUTH_SOCK") == "" {
		return nil, errors.New("ssh: set RECONCILER_GIT_SSH_KEY or run an ssh agent (SSH_AUTH_SOCK)")
	}
	auth, err := ssh.NewSSHAgentAuth(user)
	if err != nil {
		return nil, fmt.Errorf("ssh agent at SSH_AUTH_SOCK: %w", err)
	}
	return auth, nil
}
