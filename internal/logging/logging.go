// Package logging builds the *slog.Logger that reconciler's long-running
// processes (the agent) log with, so every line reads the same in a terminal
// and in a JSON pipeline.
//
// Two rules hold for every line, whatever the caller passes:
//
//   - One attribute per key. A key the logger was given with With (the
//     agent's "node") is never repeated: a later attribute with the same key
//     and the same value is dropped, one with an empty value is dropped, and
//     one with another value is kept as "<key>_2" (then "_3", ...). JSON
//     consumers that keep the last duplicate would otherwise lose the node.
//   - Durations are Go duration strings rounded for people ("took":"196ms"),
//     never nanosecond integers.
//   - No credentials: the message and every string, error or other value
//     go through internal/redact, so a URL's userinfo and secret-looking
//     query parameters never reach the log, whoever logs them.
//
// Entry point: New(w, format).
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"time"

	"github.com/fleetops/reconciler/internal/redact"
)

// Formats New accepts.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing format ("text" or "json"; anything else is
// JSON) to w, at level Info.
func New(w io.Writer, format string) *slog.Logger {
	opts := &slog.HandlerOptions{ReplaceAttr: ReplaceAttr}
	var inner slog.Handler = slog.NewJSONHandler(w, opts)
	if format == FormatText {
		inner = slog.NewTextHandler(w, opts)
	}
	return slog.New(NewHandler(inner))
}

// ReplaceAttr writes durations as rounded Go duration strings. It is the
// slog.HandlerOptions.ReplaceAttr of New's handlers.
// It also redacts credentials (package internal/redact).
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(Round(a.Value.Duration()).String())
	case slog.KindString:
		a.Value = slog.StringValue(redact.String(a.Value.String()))
	case slog.KindAny:
		a.Value = redactAny(a.Value)
	}
	return a
}

// redactAny turns a value whose printed form holds a credential into its
// redacted printed form; other values keep their type (and JSON shape).
func redactAny(v slog.Value) slog.Value {
	x := v.Any()
	if err, ok := x.(error); ok {
		return slog.StringValue(redact.String(err.Error()))
	}
	s := fmt.Sprint(x)
	if r := redact.String(s); r != s {
		return slog.StringValue(r)
	}
	return v
}

// Round keeps the digits a person reads: milliseconds from one millisecond
// up, microseconds below.
func Round(d time.Duration) time.Duration {
	if d >= time.Millisecond || d <= -time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

// handler keeps one attribute per top-level key (see the package doc).
type handler struct {
	inner slog.Handler
	keys  map[string]slog.Value // top-level keys every line already has
	group bool                  // attributes now go into a group: no clash possible
}

// NewHandler wraps inner so that no line carries a top-level key twice.
func NewHandler(inner slog.Handler) slog.Handler {
	return &handler{inner: inner, keys: map[string]slog.Value{}}
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if h.group {
		return &handler{inner: h.inner.WithAttrs(as), keys: h.keys, group: true}
	}
	keys := maps.Clone(h.keys)
	kept := unique(keys, as)
	return &handler{inner: h.inner.WithAttrs(kept), keys: keys}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{inner: h.inner.WithGroup(name), keys: h.keys, group: true}
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if msg := redact.String(r.Message); msg != r.Message {
		out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
		r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
		r = out
	}
	if h.group || r.NumAttrs() == 0 {
		return h.inner.Handle(ctx, r)
	}
	as := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		as = append(as, a)
		return true
	})
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(unique(maps.Clone(h.keys), as)...)
	return h.inner.Handle(ctx, out)
}

// unique returns as without the keys already in keys (same or empty value
// dropped, another value renamed), adding the keys it keeps to keys.
func unique(keys map[string]slog.Value, as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key == "" {
			out = append(out, a) // an inlined group: its own keys
			continue
		}
		if v, dup := keys[a.Key]; dup {
			if v.Equal(a.Value) || empty(a.Value) {
				continue
			}
			a.Key = renamed(keys, a.Key)
		}
		keys[a.Key] = a.Value
		out = append(out, a)
	}
	return out
}

func empty(v slog.Value) bool {
	return v.Kind() == slog.KindString && v.String() == ""
}

func renamed(keys map[string]slog.Value, key string) string {
	for n := 2; ; n++ {
		k := fmt.Sprintf("%s_%d", key, n)
		if _, taken := keys[k]; !taken {
			return k
		}
	}
}
