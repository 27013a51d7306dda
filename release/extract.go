package release

import (
	"context"
	"fmt"
	"os"
)

// Extract unpacks the gzip'd tar at path into dest, an existing empty
// directory, with Unpack's refusals (`..`, absolute paths, links out of
// dest, devices and fifos, more than the limits allow) but no manifest: it
// is for archives that come inside a verified release, such as an Erlang
// relx tarball. On error dest may hold part of the archive; remove it.
func Extract(ctx context.Context, path, dest string, limits Limits) error {
	f, err := openLocal(path)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("extract %s: %w", path, err)
	}
	defer root.Close()
	s := newScanner(limits)
	s.noManifest = true
	if _, err := s.run(&ctxReader{ctx: ctx, r: f}, extractTo(root)); err != nil {
		return fmt.Errorf("extract %s: %w", path, err)
	}
	return nil
}
