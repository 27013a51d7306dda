package redact

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://u:pw@example.com/a.tgz", "https://REDACTED@example.com/a.tgz"},
		{"https://ghp_tok123@github.com/o/r.git", "https://REDACTED@github.com/o/r.git"},
		{`Get "http://u:p%40ss@127.0.0.1:80/x": dial tcp`, `Get "http://REDACTED@127.0.0.1:80/x": dial tcp`},
		{"https://h/a.tgz?token=abc&v=1", "https://h/a.tgz?token=REDACTED&v=1"},
		{"https://h/a?X-Amz-Signature=ff&X-Amz-Credential=AK%2F1&x=2", "https://h/a?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x=2"},
		{"https://h/a?sig=1;api_key=2#f", "https://h/a?sig=REDACTED;api_key=REDACTED#f"},
		{"https://h/a?access_token=1&Password=2&SECRET=3&sv=4", "https://h/a?access_token=REDACTED&Password=REDACTED&SECRET=REDACTED&sv=4"},
		{`{"url":"https://h/a?x=1\u0026token=s3"}`, `{"url":"https://h/a?x=1\u0026token=REDACTED"}`},
		{"fetch https://h/a?token=1 and http://v:w@h2/", "fetch https://h/a?token=REDACTED and http://REDACTED@h2/"},
		{"user@example.com https://h/p@x", "user@example.com https://h/p@x"}, // no userinfo: @ in a path
		{"https://h/a?jwt=eyJ1&bearer=2", "https://h/a?jwt=REDACTED&bearer=REDACTED"},
		{"https://h/cb#access_token=1&state=2", "https://h/cb#access_token=REDACTED&state=2"}, // OAuth's implicit flow
		{"https://h/a#section", "https://h/a#section"},
		{"plain text, no URL", "plain text, no URL"},
		{"file:///srv/a.tgz", "file:///srv/a.tgz"},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestError(t *testing.T) {
	base := fmt.Errorf("fetch https://u:pw@h/a: %w", fs.ErrNotExist)
	err := Error(base)
	if strings.Contains(err.Error(), "pw") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Error = %q (Is ErrNotExist: %v)", err, errors.Is(err, fs.ErrNotExist))
	}
	if plain := errors.New("x"); Error(plain) != plain || Error(nil) != nil {
		t.Fatal("Error should return an error without secrets as it is")
	}
}

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	fmt.Fprintf(Writer(&b), "reconciler: status --repo http://u:hunter2@h/r: refused\n")
	if strings.Contains(b.String(), "hunter2") {
		t.Fatal(b.String())
	}
}
