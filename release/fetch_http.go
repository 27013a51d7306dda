package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/fleetops/reconciler/internal/redact"
)

// permanentError marks a failure that a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// errStalled is the cause of an attempt cancelled for lack of progress.
var errStalled = errors.New("stalled: no data received")

// get downloads u, handing the body to consume, with bounded retries and
// jittered exponential backoff. consume may be called once per attempt.
func (f *Fetcher) get(ctx context.Context, u *url.URL, consume func(io.Reader) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = f.try(ctx, u, consume)
		var p *permanentError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &p) || ctx.Err() != nil:
			return withCause(ctx, err)
		case attempt > f.opts.Retries:
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		t := time.NewTimer(f.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %w)", context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// try makes one attempt, bounded by StallTimeout between two reads (the
// caller's ctx carries the whole fetch's deadline).
func (f *Fetcher) try(ctx context.Context, u *url.URL, consume func(io.Reader) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(f.opts.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return permanent(err)
	}
	resp, err := f.opts.Client.Do(req)
	if err != nil {
		return withCause(ctx, err)
	}
	defer resp.Body.Close()
	if err := statusError(resp); err != nil {
		return err
	}
	body := &progressReader{r: resp.Body, stall: stall, d: f.opts.StallTimeout}
	if err := consume(body); err != nil {
		return withCause(ctx, err)
	}
	return nil
}

// withCause adds why the attempt's context ended (stall, timeout) to err.
func withCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// statusError classifies a response: nil for 200, retryable for 5xx and 429,
// permanent otherwise.
func statusError(resp *http.Response) error {
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return permanent(fmt.Errorf("HTTP %s: %w", resp.Status, ErrNotFound))
	case code >= 500 || code == http.StatusTooManyRequests:
		return fmt.Errorf("HTTP %s", resp.Status)
	default:
		return permanent(fmt.Errorf("HTTP %s", resp.Status))
	}
}

// progressReader pushes the stall deadline back whenever data arrives.
type progressReader struct {
	r     io.Reader
	stall *time.Timer
	d     time.Duration
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.stall.Reset(p.d)
	}
	return n, err
}

// readSmall fetches a small file (a signature) into memory, at most max bytes.
func (f *Fetcher) readSmall(ctx context.Context, source string, max int64) ([]byte, error) {
	ctx, cancel := f.deadline(ctx)
	defer cancel()
	u, local, err := parseSource(source)
	if err != nil {
		return nil, err
	}
	read := func(r io.Reader) ([]byte, error) {
		var buf bytes.Buffer
		n, err := io.Copy(&buf, io.LimitReader(r, max+1))
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if n > max {
			return nil, permanent(fmt.Errorf("more than the %d bytes allowed", max))
		}
		return buf.Bytes(), nil
	}
	if local != "" {
		fh, err := openLocal(local)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		return read(fh)
	}
	var data []byte
	err = f.get(ctx, u, func(body io.Reader) (err error) {
		data, err = read(body)
		return err
	})
	if err != nil {
		return nil, redact.Error(fmt.Errorf("fetch %s: %w", redact.String(source), err))
	}
	return data, nil
}
