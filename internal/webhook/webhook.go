package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultMaxBody bounds a webhook's body: GitHub caps its payloads at
// 25 MB but a push's is a few KiB per commit; 4 MiB is thousands of commits.
const DefaultMaxBody = 4 << 20

// Options configures a Receiver. Zero values take the defaults in comments.
type Options struct {
	Listen string // address to listen on, host:port (required)
	Secret []byte // the hooks' shared secret (required)
	Branch string // the tracked branch, e.g. "main" (required)
	// MaxBody bounds a request body in bytes (default DefaultMaxBody).
	MaxBody int64
	Logger  *slog.Logger // default: discard
}

// Receiver is a listening webhook endpoint.
type Receiver struct {
	opt Options
	ln  net.Listener
	log *slog.Logger
}

// New validates opt and listens on opt.Listen.
func New(opt Options) (*Receiver, error) {
	switch {
	case opt.Listen == "":
		return nil, errors.New("webhook: Listen is required")
	case len(opt.Secret) == 0:
		return nil, errors.New("webhook: Secret is required: an unauthenticated hook would let anyone wake the agent")
	case opt.Branch == "":
		return nil, errors.New("webhook: Branch is required")
	}
	if opt.MaxBody <= 0 {
		opt.MaxBody = DefaultMaxBody
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opt.Listen)
	if err != nil {
		return nil, fmt.Errorf("webhook: listen on %s: %w", opt.Listen, err)
	}
	return &Receiver{opt: opt, ln: ln, log: opt.Logger}, nil
}

// Addr is the address the receiver listens on.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Watch serves webhooks until ctx ends, calling wake for each push to the
// tracked branch. It implements agent.Watcher.
func (r *Receiver) Watch(ctx context.Context, wake func()) error {
	srv := &http.Server{Handler: r.Handler(wake), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(r.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("webhook on %s: %w", r.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("webhook on %s: shut down: %w", r.Addr(), err)
	}
	<-done
	return nil
}

// Close stops listening (for a Receiver whose Watch never ran).
func (r *Receiver) Close() error { return r.ln.Close() }

// answer is the JSON body of every response.
type answer struct {
	Result   string `json:"result,omitempty"` // woken | ignored
	Provider string `json:"provider,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Handler is the webhook endpoint, calling wake for a push to the branch.
func (r *Receiver) Handler(wake func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			reply(w, http.StatusMethodNotAllowed, answer{Error: "webhooks are POSTed"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.opt.MaxBody))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			reply(w, http.StatusRequestEntityTooLarge, answer{Error: fmt.Sprintf("body over %d bytes", r.opt.MaxBody)})
			return
		case err != nil:
			reply(w, http.StatusBadRequest, answer{Error: "read body: " + err.Error()})
			return
		}
		p, err := identify(req.Header)
		if err == nil {
			err = p.authenticate(req.Header, body, r.opt.Secret)
		}
		if err != nil {
			r.log.Warn("webhook refused", "remote", req.RemoteAddr, "err", err)
			reply(w, http.StatusUnauthorized, answer{Provider: p.name, Error: err.Error()})
			return
		}
		branches, why, err := p.pushed(req.Header, body)
		if err != nil {
			reply(w, http.StatusBadRequest, answer{Provider: p.name, Error: err.Error()})
			return
		}
		for _, b := range branches {
			if b == r.opt.Branch {
				r.log.Info("push webhook: waking the agent", "provider", p.name, "branch", b)
				wake()
				reply(w, http.StatusAccepted, answer{Result: "woken", Provider: p.name})
				return
			}
		}
		if why == "" {
			why = fmt.Sprintf("push to %s, not the tracked branch %s", strings.Join(branches, ", "), r.opt.Branch)
		}
		r.log.Debug("webhook ignored", "provider", p.name, "why", why)
		reply(w, http.StatusOK, answer{Result: "ignored", Provider: p.name, Reason: why})
	})
}

func reply(w http.ResponseWriter, code int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(a) // the client went away: nothing to do
}

// validHMAC checks a hex HMAC-SHA256 of body under secret, in constant time.
func validHMAC(secret, body []byte, hexSig string) bool {
	sig, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(sig, m.Sum(nil))
}

// sameToken compares a plain token with the secret in constant time.
func sameToken(secret []byte, token string) bool {
	return subtle.ConstantTimeCompare(secret, []byte(token)) == 1
}
