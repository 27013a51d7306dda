package etcdstore

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/clock"
)

// DefaultPrefix is where the shared state lives in etcd unless
// Options.Prefix says otherwise (the CLI's --shared-prefix).
const DefaultPrefix = "/reconciler/"

// Options configures a Store. Zero values take the defaults in comments.
type Options struct {
	// Endpoints are the etcd members, host:port (required).
	Endpoints []string
	// Prefix of every key (default "/reconciler/"); it must end with "/".
	Prefix string
	// TLS, when set, is used for every connection (CA, client certificate).
	TLS *tls.Config
	// Username and Password authenticate to etcd when Username is set.
	Username, Password string
	// Identity names this handle in lease notes (`leases break`): a node
	// or an operator.
	Identity string
	// OpTimeout bounds each call to etcd (default 5s): an unreachable
	// cluster is a transient error, not a hang.
	OpTimeout time.Duration
	// LivenessTTL is the TTL of the etcd lease behind this handle's node
	// liveness keys (default 30s): a report whose agent stopped for that
	// long reads as Stale.
	LivenessTTL time.Duration
	// ReportRefresh: as fleetrepo.SharedOptions.ReportRefresh (default 5m;
	// negative: skip every unchanged report).
	ReportRefresh time.Duration
	// Instance names this handle in its liveness keys: as
	// fleetrepo.SharedOptions.Instance (default random).
	Instance string
	Clock    clock.Clock  // default the system clock; lease observations use it
	Logger   *slog.Logger // default: discard
	// Client, when set, is the connection to use instead of dialling
	// Endpoints (TLS and the user are then the client's); Close leaves it
	// open. Many handles in one process (internal/scale's simulated
	// nodes) share one connection this way.
	Client *clientv3.Client
	// RecordPage is how many keys of a rollout record one read asks for
	// (default 500: about 120 KB of node_done events).
	RecordPage int
	// Decoded, when set, holds the rollout records' decoded events for
	// every Store given the same one (many handles in one process, as
	// Client): each event is decoded once, not once per handle.
	Decoded *Decoded
}

func (o *Options) withDefaults() error {
	if len(o.Endpoints) == 0 {
		return errors.New("etcd shared state: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(o.Prefix, "/") || !strings.HasSuffix(o.Prefix, "/") {
		return fmt.Errorf("etcd shared state: key prefix %q must start and end with /", o.Prefix)
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 5 * time.Second
	}
	if o.RecordPage <= 0 {
		o.RecordPage = 500
	}
	if o.LivenessTTL <= 0 {
		o.LivenessTTL = 30 * time.Second
	}
	if o.ReportRefresh == 0 {
		o.ReportRefresh = 5 * time.Minute
	}
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ParseURL reads a --shared value etcd://host:port[,host:port...] into
// endpoints. ok is false when s is not an etcd URL (a Git URL).
func ParseURL(s string) (endpoints []string, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return nil, false, nil
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return nil, true, fmt.Errorf("%q names no etcd member: want etcd://host:port[,host:port...]", s)
	}
	for _, hp := range strings.Split(rest, ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" || port == "" || strings.ContainsAny(hp, "/?#@") {
			return nil, true, fmt.Errorf("%q: member %q is not host:port: want etcd://host:port[,host:port...]", s, hp)
		}
		endpoints = append(endpoints, hp)
	}
	return endpoints, true, nil
}

// Store is the shared state in etcd. It is safe for concurrent use. Its
// record operations are serialized, and so are its lease and report
// operations, but the two not with each other: a holder renews while its
// pass reads the record. Give independent actors their own.
type Store struct {
	opts     Options
	cli      *clientv3.Client
	ownsCli  bool // Open dialled cli (not Options.Client): Close closes it
	url      string
	instance string // random, names this handle's liveness keys

	// ctx ends background work (the liveness keep-alive) on Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// recMu serializes the rollout records' reads and appends: a record
	// read of many pages on a loaded cluster (seconds) held the one
	// mutex there was, and a holder's renewals and liveness keep-alive
	// queued behind it until its lease expired (docs/scale.md).
	recMu   sync.Mutex
	records map[string]recordCache // app -> events read so far (under recMu)

	mu       sync.Mutex
	seen     map[string]observation // lease key -> first seen at its token
	lost     []lostWrite            // lease writes whose answers were lost
	reports  map[string]reportCache // node -> last report written
	liveness clientv3.LeaseID       // 0: none granted (or expired)
	// keptAlive is the lease a keep-alive runs for (0: none; liveness
	// is asked for again at the next write)
	keptAlive clientv3.LeaseID

	badMu sync.Mutex
	bad   map[string]fleetrepo.BadRef // unreadable keys, by key

	focusMu   sync.Mutex
	focused   bool            // Focus was called: only slotWaits' lease changes wake Watch
	slotWaits map[string]bool // apps whose last Focus said lease changes matter
	// farWaves: app -> the wave_done events that cannot change what this
	// node does (FocusWaves)
	farWaves  map[string]waveFocus
	refocus   chan struct{} // (1) whether the leases matter changed
	leasesRev int64         // revision of the last Leases read (under mu)
}

// Open connects to etcd. Without a user it does not wait for a member to
// answer; with one it authenticates first (an error for a person when the
// credentials are refused).
func Open(opts Options) (*Store, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	if opts.Client != nil {
		return newStore(opts, opts.Client, false), nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: opts.Endpoints, TLS: opts.TLS, Username: opts.Username, Password: opts.Password,
		Logger: zap.NewNop(), DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
		DialTimeout: opts.OpTimeout, // bounds the authentication at connect (with a user)
	})
	url := "etcd://" + strings.Join(opts.Endpoints, ",") + opts.Prefix
	if err != nil {
		// With a user, the client authenticates as it connects: refused
		// credentials are a person's to fix.
		return nil, classify("connect to", url, err)
	}
	return newStore(opts, cli, true), nil
}

func newStore(opts Options, cli *clientv3.Client, owns bool) *Store {
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		opts: opts, cli: cli, ownsCli: owns, url: "etcd://" + strings.Join(opts.Endpoints, ",") + opts.Prefix,
		instance: cmp.Or(opts.Instance, randomID()), ctx: ctx, cancel: cancel,
		seen: map[string]observation{}, records: map[string]recordCache{}, reports: map[string]reportCache{},
		bad: map[string]fleetrepo.BadRef{}, slotWaits: map[string]bool{}, farWaves: map[string]waveFocus{}, refocus: make(chan struct{}, 1),
	}
}

// Close stops the liveness keep-alive (the node's liveness key then expires
// after LivenessTTL) and the connection.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	if !s.ownsCli {
		return nil
	}
	return s.cli.Close()
}

// URL names the store in messages: etcd://endpoints/prefix.
func (s *Store) URL() string { return s.url }

// op bounds one call to etcd by OpTimeout.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.OpTimeout)
}

// PersonError is a refusal retrying cannot fix (permission denied, bad
// credentials): a person must act. It matches fleetrepo.NeedsPerson and,
// like a refused push, errors.Is(err, fleetrepo.ErrRejected).
type PersonError struct {
	Op, URL string
	Err     error
}

func (e *PersonError) Error() string {
	return fmt.Sprintf("%s %s: %v (check the etcd user, password and role)", e.Op, e.URL, e.Err)
}
func (e *PersonError) Unwrap() error { return e.Err }

// NeedsPerson marks the error as one a person must act on.
func (e *PersonError) NeedsPerson() bool { return true }

// Is makes errors.Is(err, fleetrepo.ErrRejected) true.
func (e *PersonError) Is(target error) bool { return target == fleetrepo.ErrRejected }

// ConflictError is a lost transaction on Key: the caller expected its mod
// revision to be Expected (0: absent) but it is Actual. It matches
// fleetrepo.ErrConflict. What to do: re-read and decide again.
type ConflictError struct {
	URL, Key         string
	Expected, Actual int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("update %s in %s: expected revision %s but it is %s", e.Key, e.URL, rev(e.Expected), rev(e.Actual))
}

// Is makes errors.Is(err, fleetrepo.ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == fleetrepo.ErrConflict }

func rev(r int64) string {
	if r == 0 {
		return "(absent)"
	}
	return fmt.Sprint(r)
}

// classify types an error of a call to etcd by what the caller should do:
// refused credentials or permissions need a person (*PersonError);
// anything else (no leader, unreachable members, timeouts) is a
// *fleetrepo.TransientError, retried with backoff.
func (s *Store) classify(op string, err error) error { return classify(op, s.url, err) }

func classify(op, url string, err error) error {
	for _, permanent := range []error{rpctypes.ErrPermissionDenied, rpctypes.ErrAuthFailed,
		rpctypes.ErrUserEmpty, rpctypes.ErrUserNotFound, rpctypes.ErrAuthNotEnabled, rpctypes.ErrInvalidAuthMgmt} {
		if errors.Is(err, permanent) || (err != nil && err.Error() == permanent.Error()) {
			return &PersonError{Op: op, URL: url, Err: err}
		}
	}
	return &fleetrepo.TransientError{Op: op, Repo: url, Err: err}
}
