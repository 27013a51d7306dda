package release

import (
	"context"
	"net/http"
	"path"
	"strings"
	"testing"
)

// FuzzParseSource: artifact and signature URLs come from the fleet spec.
// parseSource either refuses one or returns exactly one of a URL the HTTP
// client can request (http or https, with a host) and an absolute local path
// (for file://); and no error names a password the URL carried: errors end
// up in node reports, which every node of the fleet can read.
//
// The source is prefix + password + suffix, so that the password is known
// even when the rest does not parse.
func FuzzParseSource(f *testing.F) {
	for _, s := range [][2]string{
		{"https://releases.example.com/web-1.1.0.tar.gz", ""},
		{"http://127.0.0.1:8080/a.tar.gz?token=x#frag", ""},
		{"file:///srv/releases/web-1.1.0.tar.gz", ""},
		{"file://localhost/srv/web.tar.gz", ""},
		{"file://host/srv/web.tar.gz", ""},
		{"releases/web-1.1.0.tar.gz", ""},
		{"ftp://example.com/x", ""},
		{"http:///no-host", ""},
		{"https://ada:@releases.example.com/%zz", "hunter22"},
		{"file://ada:@host/x", "hunter22"},
		{"gopher://ada:@host/x", "hunter22"},
		{"https://ada:@[::1/x", "hunter22"},
	} {
		prefix, suffix, _ := strings.Cut(s[0], ":@")
		if s[1] == "" {
			prefix, suffix = s[0], ""
		} else {
			prefix += ":"
			suffix = "@" + suffix
		}
		f.Add(prefix, s[1], suffix)
	}
	f.Fuzz(func(t *testing.T, prefix, password, suffix string) {
		source := prefix + password + suffix
		u, local, err := parseSource(source)
		if err == nil {
			switch {
			case (u == nil) == (local == ""):
				t.Fatalf("parseSource(%q) = %v, %q: want exactly one of a URL and a path", source, u, local)
			case u != nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == ""):
				t.Fatalf("parseSource(%q) returned the URL %s: want http(s)://host/...", source, u.Redacted())
			case u != nil:
				if _, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u.String(), nil); err != nil {
					t.Fatalf("parseSource(%q) returned a URL the HTTP client refuses: %v", source, err)
				}
			case strings.Contains(source, "://") && !path.IsAbs(local):
				t.Fatalf("parseSource(%q) returned the relative path %q for a file:// URL", source, local)
			}
		}
		scheme, user, ok := strings.Cut(prefix, "://")
		if !ok || !validScheme(scheme) || !strings.Contains(user, ":") || strings.ContainsAny(user, "/?#@") || !strings.HasPrefix(suffix, "@") ||
			!secretLike(password) || strings.Contains(prefix+suffix, password) {
			return // not a password in the URL's userinfo
		}
		if err != nil && strings.Contains(err.Error(), password) {
			t.Fatalf("parseSource(%q): the error shows the password: %v", source, err)
		}
		if u != nil && strings.Contains(u.Redacted(), password) {
			t.Fatalf("parseSource(%q): the redacted URL shows the password: %s", source, u.Redacted())
		}
	})
}

// secretLike: at least 6 characters a URL's userinfo may hold as they are,
// so that source contains it only where it was put and "fetch" or a scheme
// does not.
func secretLike(p string) bool {
	if len(p) < 6 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~!$&'()*+,;=", c)) {
			return false
		}
	}
	return true
}

// validScheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986); before
// anything else "://" is no scheme ("#://u:p@" is a fragment).
func validScheme(s string) bool {
	for i, c := range s {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}
