package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetops/reconciler/internal/redact"
)

// Options configure a Fetcher. Zero fields take the defaults in brackets.
type Options struct {
	// CacheDir keeps downloaded artifacts, each named by its sha256. Required
	// for http(s) sources; local sources are read in place.
	CacheDir string
	// Timeout bounds a whole fetch, retries and backoff included: Fetch of
	// one source, and Install's signature and artifact together [10m]. A
	// server that trickles bytes (one every 2 s never stalls) ends there.
	Timeout time.Duration
	// StallTimeout aborts an attempt when no byte arrives for this long,
	// headers included [30s]; the attempt is retried.
	StallTimeout time.Duration
	// Retries is the number of further attempts after a network error, a 5xx
	// or a 429 [3]; negative means none. A 4xx other than 429 is final.
	Retries int
	// Backoff is the wait before the first retry; it doubles at each retry,
	// with ±50% jitter, up to 30s [1s].
	Backoff time.Duration
	// MaxSize is the largest artifact accepted, downloaded or local [4 GiB].
	MaxSize int64
	// Limits bound what Install unpacks (see Limits for the defaults).
	Limits Limits
	// Client makes the HTTP requests [a client with the default transport;
	// Timeout and StallTimeout apply on top].
	Client *http.Client
}

// Default fetch options.
const (
	DefaultTimeout      = 10 * time.Minute
	DefaultStallTimeout = 30 * time.Second
	DefaultRetries      = 3
	DefaultBackoff      = time.Second
	DefaultMaxSize      = 4 << 30
	maxBackoff          = 30 * time.Second
)

// Validate checks the options.
func (o Options) Validate() error {
	if o.Timeout < 0 || o.StallTimeout < 0 || o.Backoff < 0 || o.MaxSize < 0 {
		return errors.New("fetch options: Timeout, StallTimeout, Backoff and MaxSize must not be negative")
	}
	return nil
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Timeout, DefaultTimeout)
	def(&o.StallTimeout, DefaultStallTimeout)
	def(&o.Backoff, DefaultBackoff)
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// Fetcher gets artifacts and signatures from local paths, file:// and
// http(s):// URLs. It is safe for concurrent use.
type Fetcher struct {
	opts Options
}

// NewFetcher validates opts and returns a Fetcher.
func NewFetcher(opts Options) (*Fetcher, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Fetcher{opts: opts.withDefaults()}, nil
}

// ErrNotFound means the source answered that the artifact does not exist
// (HTTP 404 or 410, or no such local file).
var ErrNotFound = errors.New("not found")

// ErrDigestMismatch means the artifact's sha256 differs from its pin.
var ErrDigestMismatch = errors.New("sha256 mismatch")

// Fetch returns a local path holding the artifact at source: the file itself
// for a local path or file:// URL, a file in CacheDir named by its sha256 for
// http(s). Fetch does not verify anything: see Install.
func (f *Fetcher) Fetch(ctx context.Context, source string) (localPath string, err error) {
	return f.fetch(ctx, source, nil)
}

// fetch is Fetch with an optional sha256 pin: a cached file with that
// digest is used without downloading, and a download must match it.
func (f *Fetcher) fetch(ctx context.Context, source string, pin []byte) (string, error) {
	ctx, cancel := f.deadline(ctx)
	defer cancel()
	u, local, err := parseSource(source)
	if err != nil {
		return "", err
	}
	if local != "" {
		return local, f.checkLocal(local)
	}
	if f.opts.CacheDir == "" {
		return "", fmt.Errorf("fetch %s: http(s) sources need a cache directory", redact.String(source))
	}
	if pin != nil {
		cached := f.cachePath(pin)
		if fi, err := os.Stat(cached); err == nil && fi.Mode().IsRegular() {
			return cached, nil
		}
	}
	var p string
	err = f.get(ctx, u, func(body io.Reader) error {
		p, err = f.store(body, pin)
		return err
	})
	if err != nil {
		return "", redact.Error(fmt.Errorf("fetch %s: %w", redact.String(source), err))
	}
	return p, nil
}

// deadline bounds a fetch by Timeout, saying so when it ends it.
func (f *Fetcher) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, f.opts.Timeout, fmt.Errorf("%w: no complete download within %v", ErrTimeout, f.opts.Timeout))
}

// ErrTimeout means a fetch did not end within Options.Timeout.
var ErrTimeout = errors.New("fetch timed out")

// parseSource returns either a URL to download or a local path. Its errors
// never show a credential the source carries (internal/redact): they end
// up in node reports.
func parseSource(source string) (*url.URL, string, error) {
	if !strings.Contains(source, "://") {
		if source == "" {
			return nil, "", errors.New("fetch: empty source")
		}
		return nil, source, nil
	}
	u, err := url.Parse(source)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.Error() quotes the whole source
		}
		return nil, "", redact.Error(fmt.Errorf("fetch %q: %w", redact.String(source), err))
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, "", fmt.Errorf("fetch %s: no host: want %s://host/path", redact.String(source), u.Scheme)
		}
		return u, "", nil
	case "file":
		if (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return nil, "", fmt.Errorf("fetch %s: want file:///absolute/path", redact.String(source))
		}
		return nil, u.Path, nil
	}
	return nil, "", fmt.Errorf("fetch %s: unsupported scheme %q (want a path, file://, http:// or https://)", redact.String(source), u.Scheme)
}

func (f *Fetcher) checkLocal(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("fetch %s: %w", p, ErrNotFound)
	case err != nil:
		return fmt.Errorf("fetch: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("fetch %s: not a regular file", p)
	case fi.Size() > f.opts.MaxSize:
		return fmt.Errorf("fetch %s: %d bytes, more than the %d allowed", p, fi.Size(), f.opts.MaxSize)
	}
	return nil
}

func (f *Fetcher) cachePath(sum []byte) string {
	return filepath.Join(f.opts.CacheDir, "sha256-"+hex.EncodeToString(sum)+".tar.gz")
}

// inCache reports whether p is a file of the cache (not a local source).
func (f *Fetcher) inCache(p string) bool {
	return f.opts.CacheDir != "" && filepath.Dir(p) == filepath.Clean(f.opts.CacheDir)
}

// store writes body into the cache under its sha256, atomically.
func (f *Fetcher) store(body io.Reader, pin []byte) (string, error) {
	if err := os.MkdirAll(f.opts.CacheDir, 0o700); err != nil {
		return "", permanent(fmt.Errorf("cache: %w", err))
	}
	tmp, err := os.CreateTemp(f.opts.CacheDir, ".download-*")
	if err != nil {
		return "", permanent(fmt.Errorf("cache: %w", err))
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, f.opts.MaxSize+1))
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	if n > f.opts.MaxSize {
		return "", permanent(fmt.Errorf("more than the %d bytes allowed", f.opts.MaxSize))
	}
	sum := h.Sum(nil)
	if pin != nil && !equalDigest(sum, pin) {
		return "", permanent(fmt.Errorf("%w: got %x, pinned %x", ErrDigestMismatch, sum, pin))
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	p := f.cachePath(sum)
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", permanent(fmt.Errorf("cache: %w", err))
	}
	return p, nil
}

// backoff returns the jittered wait before retry number n (from 1).
func (f *Fetcher) backoff(n int) time.Duration {
	d := f.opts.Backoff << (n - 1)
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	return d/2 + rand.N(d)
}
