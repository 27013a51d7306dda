package fleetrepo

import (
	"testing"
)

// FuzzTrailers checks that the trailers reconciler writes parse back: for
// any subject/body and any trailer values, ParseTrailers(commitMessage(msg,
// t)) is t with each value folded onto one line, whatever the message says.
func FuzzTrailers(f *testing.F) {
	f.Add("web: set version 1.1.0", "web", "1.0.0", "1.1.0", "upgrade", "", "")
	f.Add("web: roll back 1.1.0\n\nnode n2 failed its health check", "web", "1.1.0", "1.0.0",
		"health check failed on n2", "n2", "0123456789abcdef0123456789abcdef01234567")
	f.Add("subject\n\nReconciler-App: spoofed\nReconciler-Node: n9", "", "", "", "", "", "")
	f.Add("", "a b\nc", " x ", "\t", "why: because", "n1", "")
	f.Fuzz(func(t *testing.T, msg, app, from, to, reason, node, rollbackOf string) {
		want := Trailers{App: app, From: from, To: to, Reason: reason, Node: node, RollbackOf: rollbackOf}
		message := commitMessage(msg, want)
		got := ParseTrailers(message)
		if want.String() == "" {
			// No trailer block: the message's own last paragraph, if any, is
			// it, its values as written (only the trailers reconciler
			// writes are folded onto one line).
			want = ParseTrailers(msg)
		} else {
			for _, f := range want.fields() {
				*f.value = oneLine(*f.value)
			}
		}
		if got != want {
			t.Fatalf("ParseTrailers(commitMessage(%q, ...)) =\n%+v\nwant\n%+v\nmessage:\n%s", msg, got, want, message)
		}
	})
}
