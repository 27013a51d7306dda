package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/spf13/pflag"

	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// sharedState is the fleet's shared state as the agent and the CLI use it:
// *fleetrepo.Shared (refs/reconciler/* in Git, the default) or
// *etcdstore.Store (--shared etcd://...).
type sharedState interface {
	rollout.Shared
	WriteReport(ctx context.Context, r reconciler.NodeReport) error
	Watch(ctx context.Context, wake func()) error
	Break(ctx context.Context, app string, slot int) (reconciler.Lease, error)
	BadRefs() []fleetrepo.BadRef
	URL() string
}

var (
	_ sharedState = (*fleetrepo.Shared)(nil)
	_ sharedState = (*etcdstore.Store)(nil)
)

// etcdPasswordEnv holds the etcd password when --etcd-user is set and
// --etcd-password-file is not (never a flag: it would show in ps).
const etcdPasswordEnv = "RECONCILER_ETCD_PASSWORD"

// minLivenessTTL bounds --liveness-ttl from below: etcd grants whole
// seconds, and a keep-alive every third of a shorter TTL lapses at the
// first slow answer.
const minLivenessTTL = 3 * time.Second

// sharedFlags choose the shared-state store: every command that reads or
// writes node reports, rollout records or leases has them.
type sharedFlags struct {
	shared, sharedRepo, prefix string
	ca, cert, key              string
	user, passwordFile         string
	// liveness is the agent's --liveness-ttl (0: etcdstore's default).
	liveness time.Duration
}

func (f *sharedFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.shared, "shared", "", "shared state (node reports, rollout records, leases): etcd://host:port[,host:port...], or a Git repository URL (default: --repo)")
	fl.StringVar(&f.sharedRepo, "shared-repo", "", "Git repository of the shared state (default: --repo); same as --shared with a Git URL")
	fl.StringVar(&f.prefix, "shared-prefix", etcdstore.DefaultPrefix, "with --shared etcd://: prefix of every key")
	fl.StringVar(&f.ca, "etcd-ca", "", "with --shared etcd://: CA certificate (PEM) to verify the etcd members (enables TLS)")
	fl.StringVar(&f.cert, "etcd-cert", "", "with --shared etcd://: client certificate (PEM) for TLS client authentication (enables TLS)")
	fl.StringVar(&f.key, "etcd-key", "", "with --shared etcd://: key (PEM) of --etcd-cert")
	fl.StringVar(&f.user, "etcd-user", "", "with --shared etcd://: etcd user; the password comes from --etcd-password-file or $"+etcdPasswordEnv)
	fl.StringVar(&f.passwordFile, "etcd-password-file", "", "with --shared etcd://: file holding the etcd password of --etcd-user")
}

// registerLiveness adds --liveness-ttl: only the agent writes reports.
func (f *sharedFlags) registerLiveness(fl *pflag.FlagSet) {
	fl.DurationVar(&f.liveness, "liveness-ttl", 0, "with --shared etcd://: TTL of the etcd lease behind this node's liveness key; status shows the node stale after this long without the agent (default 30s; raise it for fleets of thousands, docs/shared-state.md)")
}

// value is the shared state named: --shared or --shared-repo ("": --repo's).
func (f *sharedFlags) value() (string, error) {
	if f.shared != "" && f.sharedRepo != "" && f.shared != f.sharedRepo {
		return "", &usageError{errors.New("--shared and --shared-repo name two shared states: give one")}
	}
	if f.shared != "" {
		return f.shared, nil
	}
	return f.sharedRepo, nil
}

// gitURL is the Git repository of the shared state ("" for --repo's), or
// etcd true with its endpoints.
func (f *sharedFlags) gitURL() (url string, endpoints []string, err error) {
	v, err := f.value()
	if err != nil {
		return "", nil, err
	}
	endpoints, isEtcd, err := etcdstore.ParseURL(v)
	if err != nil {
		return "", nil, &usageError{fmt.Errorf("--shared %w", err)}
	}
	if isEtcd {
		return "", endpoints, nil
	}
	if strings.HasPrefix(v, "etcd:") || strings.HasPrefix(v, "etcds:") {
		return "", nil, &usageError{fmt.Errorf("--shared %q: want etcd://host:port[,host:port...] (TLS: add --etcd-ca)", v)}
	}
	if f.ca != "" || f.cert != "" || f.key != "" || f.user != "" || f.passwordFile != "" {
		return "", nil, &usageError{errors.New("--etcd-ca, --etcd-cert, --etcd-key, --etcd-user and --etcd-password-file need --shared etcd://host:port")}
	}
	if f.liveness != 0 {
		return "", nil, &usageError{errors.New("--liveness-ttl needs --shared etcd://host:port (on Git a report's freshness is its age: --poll)")}
	}
	return v, nil, nil
}

// openEtcd opens the etcd store at endpoints, as the flags say, for who.
func (f *sharedFlags) openEtcd(e *env, endpoints []string, who, instance string, log *slog.Logger) (*etcdstore.Store, error) {
	var err error
	opts := etcdstore.Options{Endpoints: endpoints, Prefix: f.prefix, Identity: who, Instance: instance, Logger: log, LivenessTTL: f.liveness}
	if f.liveness != 0 && f.liveness < minLivenessTTL {
		return nil, &usageError{fmt.Errorf("--liveness-ttl %s: want at least %s (the lease is kept alive every third of it)", f.liveness, minLivenessTTL)}
	}
	if !strings.HasPrefix(f.prefix, "/") || !strings.HasSuffix(f.prefix, "/") {
		return nil, &usageError{fmt.Errorf("--shared-prefix %q: want a key prefix that starts and ends with /", f.prefix)}
	}
	if opts.TLS, err = f.tlsConfig(); err != nil {
		return nil, err
	}
	if f.user != "" {
		opts.Username = f.user
		opts.Password = e.getenv(etcdPasswordEnv)
		if f.passwordFile != "" {
			b, err := os.ReadFile(f.passwordFile)
			if err != nil {
				return nil, fmt.Errorf("--etcd-password-file: %w", err)
			}
			opts.Password = strings.TrimRight(string(b), "\r\n")
		}
		if opts.Password == "" {
			return nil, &usageError{fmt.Errorf("--etcd-user %s: no password (--etcd-password-file FILE or $%s)", f.user, etcdPasswordEnv)}
		}
	} else if f.passwordFile != "" {
		return nil, &usageError{errors.New("--etcd-password-file needs --etcd-user")}
	}
	return etcdstore.Open(opts)
}

// tlsConfig is nil without TLS flags.
func (f *sharedFlags) tlsConfig() (*tls.Config, error) {
	if f.ca == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-ca %s: no PEM certificate in it", f.ca)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return nil, &usageError{errors.New("--etcd-cert and --etcd-key go together")}
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert %s, --etcd-key %s: %w", f.cert, f.key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// openShared opens the shared state: etcd with --shared etcd://..., else
// the Git repository of --shared/--shared-repo, else repo (with auth, the
// credentials of repo). cacheDir "" keeps the Git cache in memory.
func (f *sharedFlags) openShared(ctx context.Context, e *env, repo string, auth transport.AuthMethod, who, cacheDir string, log *slog.Logger) (sharedState, error) {
	return f.openSharedAs(ctx, e, repo, auth, who, "", cacheDir, log)
}

// openSharedAs is openShared for an agent: instance names its writes (kept
// in its state directory, so a restarted agent knows its own reports).
func (f *sharedFlags) openSharedAs(ctx context.Context, e *env, repo string, auth transport.AuthMethod, who, instance, cacheDir string, log *slog.Logger) (sharedState, error) {
	url, endpoints, err := f.gitURL()
	if err != nil {
		return nil, err
	}
	if endpoints != nil {
		return f.openEtcd(e, endpoints, who, instance, log)
	}
	if url == "" || url == repo {
		url = repo
	} else if auth, err = fleetrepo.AuthFromEnv(url, e.getenv); err != nil {
		return nil, err
	}
	return fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: url, Auth: auth, CacheDir: cacheDir,
		Identity: fleetrepo.Identity{Name: who}, Logger: log, Instance: instance})
}
