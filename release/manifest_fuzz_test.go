package release

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
)

// FuzzParseManifest: release.json comes inside artifacts built by any
// pipeline. ParseManifest either refuses the bytes or returns a manifest
// that validates, whose programs stay inside the release directory, and
// whose encoding parses back to the same manifest.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"app":"web","version":"1.1.0","command":["bin/web","--port","8080"]}`))
	f.Add([]byte(`{"app":"web","version":"1.1.0+build.7","driver":"process","command":["bin/web"],"env":{"MODE":"prod"},` +
		`"listen":[{"name":"http","address":":8080"},{"name":"admin","address":"/run/web.sock","network":"unix"}],` +
		`"drainTimeout":"30s","health":{"http":"http://127.0.0.1:8080/health"}}`))
	f.Add([]byte(`{"app":"shop","version":"2.0.0","driver":"exec","hooks":{"install":["hooks/install"],"activate":["hooks/activate"],"rollback":["hooks/rollback"],"health":["hooks/health"]}}`))
	f.Add([]byte(`{"app":"chat","version":"0.3.0","driver":"otp","health":{"tcp":"127.0.0.1:4000"}}`))
	f.Add([]byte(`{"app":"web","version":"1","command":["../bin/web"]}`))
	f.Add([]byte(`{"app":"web","version":"1","command":["bin/web"]} {}`))
	f.Add([]byte(`{"app":"web","version":"1","command":["bin/web"],"health":{"exec":["bin/check"],"tcp":"x:1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseManifest(%s) returned a manifest that does not validate: %v", data, err)
		}
		programs := [][]string{m.Command}
		if m.Health != nil {
			programs = append(programs, m.Health.Exec)
		}
		if h := m.Hooks; h != nil {
			programs = append(programs, h.Install, h.Activate, h.Rollback, h.Health)
		}
		for _, argv := range programs {
			if len(argv) > 0 && !filepath.IsLocal(argv[0]) {
				t.Fatalf("ParseManifest(%s) accepted the program %q, outside the release", data, argv[0])
			}
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("manifest of %s does not encode: %v", data, err)
		}
		m2, err := ParseManifest(enc)
		if err != nil {
			t.Fatalf("manifest of %s encodes to %s, which ParseManifest refuses: %v", data, enc, err)
		}
		enc2, err := json.Marshal(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("manifest of %s: encoding is not a fixed point:\n%s\n%s (%v)", data, enc, enc2, err)
		}
		if m.String() != m2.String() || m.DrainTimeoutDuration() != m2.DrainTimeoutDuration() {
			t.Fatalf("manifest of %s changed by a round trip: %s %v, then %s %v", data, m, m.DrainTimeoutDuration(), m2, m2.DrainTimeoutDuration())
		}
	})
}
