// Package redact removes credentials from URLs before they are printed or
// stored: in logs, node reports and rollout records (shared refs every node
// and operator reads), /healthz and CLI messages.
//
// Two parts of a URL are treated as secrets:
//
//   - its userinfo, whole ("https://user:pass@host", and a token given as
//     the user, "https://ghp_abc@host"): it becomes "REDACTED@";
//   - the value of a query parameter whose name looks like a credential:
//     one containing token, key, secret, pass, pwd, sig (signature), auth,
//     credential, session, jwt or bearer, in the query or the fragment
//     ("#access_token="), and every X-Amz-* and X-Goog-* parameter (S3
//     and GCS presigned URLs), whatever the case: "?sig=abc" becomes
//     "?sig=REDACTED".
//
// String finds every URL in free text (an error message, a log line, JSON)
// and redacts it in place, so it is safe on text that merely contains URLs.
// It works on the text, not on a parsed URL, so it also redacts URLs that
// do not parse and JSON where "&" is written "\u0026".
//
// Entry points: String, Error, Writer.
package redact

import (
	"errors"
	"io"
	"regexp"
)

// Mark replaces a secret.
const Mark = "REDACTED"

var (
	// userinfo: scheme://<anything up to @ without a / ? # or space>@
	userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s"'<>@]+@`)
	// a secret-looking query parameter after ?, &, ; or a JSON-escaped &,
	// or in the fragment (#access_token=, OAuth's implicit flow).
	param = regexp.MustCompile(`(?i)((?:[?&;#]|\\u0026)(?:[a-z0-9_.-]*(?:token|key|secret|pass|pwd|sig|auth|credential|session|jwt|bearer)[a-z0-9_.-]*|x-(?:amz|goog)-[a-z0-9_.-]+)=)[^&;#\s"'<>\\]*`)
)

// String returns s with the secrets of every URL in it replaced by Mark.
func String(s string) string {
	if !mayHold(s) {
		return s
	}
	s = userinfo.ReplaceAllString(s, "${1}"+Mark+"@")
	return param.ReplaceAllString(s, "${1}"+Mark)
}

// mayHold is a cheap test that s may hold a URL secret.
func mayHold(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '@', '?', '&', ';', '#', '\\':
			return true
		}
	}
	return false
}

// Error returns err with a redacted message; errors.Is and errors.As still
// see the chain. It returns err itself when there is nothing to redact.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// Is lets errors.Is(Error(err), err) hold.
func (e *redacted) Is(target error) bool { return errors.Is(e.err, target) }

// Writer redacts what is written through it, one Write at a time (a URL
// split across two writes is not seen). Use it for messages (stderr), not
// for data a user exports.
func Writer(w io.Writer) io.Writer { return &writer{w: w} }

type writer struct{ w io.Writer }

func (w *writer) Write(p []byte) (int, error) {
	s := String(string(p))
	if _, err := io.WriteString(w.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}
