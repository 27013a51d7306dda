package spec

import (
	"errors"
	"fmt"
)

// Limits on what one fleet may cost to load (docs/spec.md, "Limits"). A
// fleet over a limit is refused with an error naming the limit, like any
// other invalid spec. Sizes are checked before a file is read; counts after
// CUE has evaluated the files, before the fleet is walked.
const (
	MaxFiles      = 5000    // .cue files in the fleet directory
	MaxFileBytes  = 1 << 20 // one file: 1 MiB
	MaxTotalBytes = 8 << 20 // all files together: 8 MiB
	MaxApps       = 5000    // apps
	MaxNodes      = 20000   // declared nodes, and names in one app's nodes list
	MaxErrors     = 200     // problems listed; the rest are counted
)

// ErrLimit is wrapped by errors about a fleet over one of the limits that
// are checked before its files are read (file count and sizes).
var ErrLimit = errors.New("over a limit of docs/spec.md")

// checkSizes refuses a fleet whose files are too many or too big, before
// any is read: sizes are by name.
func checkSizes(sizes map[string]int64) error {
	if len(sizes) > MaxFiles {
		return fmt.Errorf("%d .cue files, more than %d: %w", len(sizes), MaxFiles, ErrLimit)
	}
	var total int64
	for name, n := range sizes {
		if n > MaxFileBytes {
			return fmt.Errorf("%s: %d bytes, more than %d (1 MiB) for one file: %w", name, n, MaxFileBytes, ErrLimit)
		}
		total += n
	}
	if total > MaxTotalBytes {
		return fmt.Errorf("%d bytes of .cue files, more than %d (8 MiB): %w", total, MaxTotalBytes, ErrLimit)
	}
	return nil
}
