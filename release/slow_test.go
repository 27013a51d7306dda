package release

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// trickle is an artifact server that sends one byte every interval, for
// ever: it never stalls, it never ends.
func trickle(t *testing.T, interval time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000000")
		for {
			if _, err := w.Write([]byte{'x'}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(interval):
			}
		}
	}))
	t.Cleanup(srv.CloseClientConnections)
	t.Cleanup(srv.Close)
	return srv
}

// TestFetchDeadlineCoversRetries: a server sending a byte every 2 s never
// trips the stall timeout; the whole fetch, retries included, ends at
// Timeout with ErrTimeout. Before, Timeout bounded each attempt only, and
// with its retries a fetch ran four times as long.
func TestFetchDeadlineCoversRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits for a deadline of seconds")
	}
	srv := trickle(t, 2*time.Second)
	f, err := NewFetcher(Options{CacheDir: t.TempDir(), Timeout: 3 * time.Second, StallTimeout: 5 * time.Second,
		Retries: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = f.Fetch(context.Background(), srv.URL+"/a.tar.gz")
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "3s") {
		t.Fatalf("err = %v, want ErrTimeout naming 3s", err)
	}
	if took > 6*time.Second {
		t.Fatalf("fetch took %v, want the 3s deadline", took)
	}
	// The stall timeout still ends a server that sends nothing.
	f, _ = NewFetcher(Options{CacheDir: t.TempDir(), Timeout: time.Minute, StallTimeout: 300 * time.Millisecond, Retries: -1})
	srv = trickle(t, time.Hour)
	if _, err := f.Fetch(context.Background(), srv.URL); !errors.Is(err, errStalled) {
		t.Fatalf("silent server: %v, want stalled", err)
	}
}
