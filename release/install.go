package release

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/fleetops/reconciler/internal/regfile"
	"github.com/fleetops/reconciler/signing"
)

// Source says where a release artifact and its signature are.
type Source struct {
	// URL of the artifact: a local path, file:// or http(s)://.
	URL string
	// SignatureURL of its cosign signature (base64, as `cosign sign-blob
	// --output-signature` writes it): a local path, file:// or http(s)://.
	SignatureURL string
	// SHA256 optionally pins the artifact's digest (64 hex digits).
	SHA256 string
	// Refused lists sha256 digests (hex) refused before: an artifact with
	// one of them is refused again, without being verified or unpacked.
	Refused []string
}

// RefusedError is an artifact that was fetched and then refused for what
// it is (its signature, its pin, its content: a tar or gzip bomb, an
// unsafe entry, another release), as opposed to a failure to get it.
// SHA256 names it, so that it is not fetched and unpacked again at once.
type RefusedError struct {
	SHA256 string
	Err    error
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// ErrRefusedBefore means the artifact's digest is in Source.Refused.
var ErrRefusedBefore = errors.New("artifact refused before")

// Install fetches the artifact, verifies it (the signature against keys, the
// sha256 pin when there is one) and only then unpacks it into dest, which must
// not exist, through a staging directory and an atomic rename. On any failure
// nothing is left at dest. Errors name the release and the failed step:
//
//	verify release web 1.1.0: signature does not match any trusted key (cosign.pub, ops.pub)
//
// They wrap signing.ErrNoMatchingKey, signing.ErrMalformedSignature,
// ErrDigestMismatch, ErrNotFound, ErrUnsafe or ErrWrongRelease for callers
// that branch on them.
func (f *Fetcher) Install(ctx context.Context, src Source, keys *signing.KeySet, want Want, dest string) (*Manifest, error) {
	name := want.App + " " + want.Version
	if want.App == "" {
		name = src.URL
	}
	file, v, err := f.fetchVerified(ctx, src, keys, name)
	if err != nil {
		return nil, err
	}
	refuse := func(err error) error { return &RefusedError{SHA256: v.SHA256, Err: err} }
	defer file.Close()
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("unpack release %s: %w", name, err)
	}
	m, err := unpack(ctx, file, dest, want, f.opts.Limits, v.sum)
	if err != nil {
		err = fmt.Errorf("unpack release %s: %w", name, err)
		var pe *fs.PathError
		if ctx.Err() == nil && !errors.As(err, &pe) { // the content, not the disk or a stop
			err = refuse(err)
		}
		return nil, err
	}
	return m, nil
}

// fetchVerified fetches the signature and the artifact and verifies the
// artifact, returning it open. A cached copy that fails its pin is removed.
func (f *Fetcher) fetchVerified(ctx context.Context, src Source, keys *signing.KeySet, name string) (*os.File, *Verified, error) {
	ctx, cancel := f.deadline(ctx) // one deadline for the signature and the artifact
	defer cancel()
	pin, err := parsePin(src.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("install release %s: %w", name, err)
	}
	if keys == nil || keys.Len() == 0 || src.SignatureURL == "" {
		return nil, nil, fmt.Errorf("install release %s: refusing an unsigned install: need trusted keys and a signature", name)
	}
	if pin != nil && slices.Contains(src.Refused, src.SHA256) { // not even fetched
		return nil, nil, &RefusedError{SHA256: src.SHA256, Err: fmt.Errorf("install release %s: %w: its pinned sha256 %s (not fetched again until the spec changes)", name, ErrRefusedBefore, src.SHA256)}
	}
	sig, err := f.readSmall(ctx, src.SignatureURL, signing.MaxSignatureSize)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch signature of release %s: %w", name, err)
	}
	p, err := f.fetch(ctx, src.URL, pin)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch release %s: %w", name, err)
	}
	file, err := openLocal(p)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch release %s: %w", name, err)
	}
	v, err := verify(ctx, file, keys, sig, pin, f.opts.MaxSize)
	if err == nil && slices.Contains(src.Refused, v.SHA256) {
		err = fmt.Errorf("%w: sha256 %s (not unpacked again until the spec changes)", ErrRefusedBefore, v.SHA256)
	}
	if err != nil {
		file.Close()
		if errors.Is(err, ErrDigestMismatch) && f.inCache(p) {
			os.Remove(p) // corrupted on disk: download again next time
		}
		err = fmt.Errorf("verify release %s: %w", name, err)
		if v != nil {
			err = &RefusedError{SHA256: v.SHA256, Err: err}
		}
		return nil, nil, err
	}
	return file, v, nil
}

// Verified is what Verify established about an artifact.
type Verified struct {
	KeyID  string // the trusted key that verified the signature; "" if none was asked
	SHA256 string // hex
	Size   int64
	sum    []byte
}

// Verify reads the artifact at path once, computing its sha256 and checking
// the signature (when keys is non-nil) and the pin (when pinHex is non-empty)
// from the same read. It reads at most maxSize bytes (0: DefaultMaxSize).
func Verify(ctx context.Context, path string, keys *signing.KeySet, sig []byte, pinHex string, maxSize int64) (*Verified, error) {
	pin, err := parsePin(pinHex)
	if err != nil {
		return nil, err
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	f, err := openLocal(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v, err := verify(ctx, f, keys, sig, pin, maxSize)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func verify(ctx context.Context, f *os.File, keys *signing.KeySet, sig, pin []byte, maxSize int64) (*Verified, error) {
	if keys == nil {
		keys = &signing.KeySet{}
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	d := keys.NewDigesterSize(size)
	n, err := io.Copy(d, &ctxReader{ctx: ctx, r: io.LimitReader(f, maxSize+1)})
	if err != nil {
		return nil, fmt.Errorf("read artifact: %w", err)
	}
	if n > maxSize {
		return nil, fmt.Errorf("artifact larger than the %d bytes allowed", maxSize)
	}
	// From here an error refuses the artifact for what it is: v names it.
	v := &Verified{sum: d.SHA256(), Size: n}
	v.SHA256 = hex.EncodeToString(v.sum)
	if pin != nil && !equalDigest(v.sum, pin) {
		return v, fmt.Errorf("%w: artifact has %s, pinned %x", ErrDigestMismatch, v.SHA256, pin)
	}
	if keys.Len() > 0 {
		if v.KeyID, err = keys.VerifyDigest(d, sig); err != nil {
			return v, err
		}
	}
	return v, nil
}

// parsePin decodes an optional sha256 pin.
func parsePin(pinHex string) ([]byte, error) {
	if pinHex == "" {
		return nil, nil
	}
	pin, err := hex.DecodeString(pinHex)
	if err != nil || len(pin) != 32 {
		return nil, fmt.Errorf("sha256 pin %q: want 64 hex digits", pinHex)
	}
	return pin, nil
}

func equalDigest(a, b []byte) bool { return bytes.Equal(a, b) }

// openLocal opens a local regular file (never a FIFO or a device, which
// would block or never end: internal/regfile), mapping "does not exist"
// to ErrNotFound.
func openLocal(p string) (*os.File, error) {
	f, err := regfile.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	return f, err
}
