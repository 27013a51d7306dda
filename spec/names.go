package spec

import (
	"fmt"
	"strings"
)

// MaxNameLength is the longest app or node name, in bytes: a name is one
// component of a Git ref (refs/reconciler/nodes/<node>), a file name in the
// agent's state directory and a release manifest's "app" field, and 63
// bytes fit all three (and a DNS label) with room for suffixes.
const MaxNameLength = 63

// NameRule says what an app or node name may be, for error messages.
const NameRule = `1-63 ASCII letters, digits, ".", "_" or "-", starting with a letter or digit, without "..", not ending in "." or ".lock"`

// CheckName returns an error when name cannot be an app or node name (kind
// is "app" or "node", and names the name in the error). The rule is the one
// name rule of reconciler: the spec's app and node names and target lists,
// the agent's --node, a release manifest's app and the names read back from
// shared-state refs all go through it. It is stricter than Git's
// check-ref-format on purpose: a valid name is also a portable file name.
func CheckName(kind, name string) error {
	if why := nameProblem(name); why != "" {
		return fmt.Errorf("invalid %s name %q: %s; want %s", kind, name, why, NameRule)
	}
	return nil
}

// nameProblem says what is wrong with name, or "" when it is valid.
func nameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > MaxNameLength:
		return fmt.Sprintf("%d bytes long, more than %d", len(name), MaxNameLength)
	}
	for i, r := range name {
		alnum := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		switch {
		case alnum:
		case i == 0 && strings.ContainsRune("._-", r):
			return fmt.Sprintf("starts with %q", r)
		case strings.ContainsRune("._-", r):
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("control character %U at byte %d", r, i)
		default:
			return fmt.Sprintf("character %q at byte %d", r, i)
		}
	}
	switch {
	case strings.Contains(name, ".."):
		return `contains ".."`
	case strings.HasSuffix(name, ".lock"):
		return `ends in ".lock"`
	case strings.HasSuffix(name, "."):
		return `ends in "."`
	}
	return ""
}
