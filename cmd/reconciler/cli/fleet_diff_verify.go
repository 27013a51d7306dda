package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/fleetops/reconciler/internal/regfile"
	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
	"github.com/fleetops/reconciler/spec"
)

// diff --verify: each changed artifact fetched, its signature checked
// against --trust-key, and how it swaps read from its manifest.

// verifyChanges fetches and verifies the artifact of each changed app.
func verifyChanges(ctx context.Context, o *diffOptions, head *spec.Fleet, changes []reconciler.AppChange) []signatureCheck {
	keys, err := signing.LoadKeySet(o.trustKeys...)
	out := []signatureCheck{}
	cache, cerr := os.MkdirTemp("", "reconciler-diff-")
	if cerr == nil {
		defer os.RemoveAll(cache)
	}
	fetcher, ferr := release.NewFetcher(release.Options{CacheDir: cache, Retries: 1})
	for _, ch := range changes {
		if ch.Kind == reconciler.ChangeRemoved {
			continue
		}
		app := head.Apps[ch.App]
		sc := signatureCheck{App: ch.App, Version: app.Version}
		switch {
		case err != nil:
			sc.Detail = err.Error()
		case errors.Join(cerr, ferr) != nil:
			sc.Detail = errors.Join(cerr, ferr).Error()
		default:
			sc.Detail, sc.Swap, sc.OK = verifyArtifact(ctx, fetcher, keys, app)
		}
		out = append(out, sc)
	}
	return out
}

// verifyArtifact fetches and verifies an app's artifact, then reads how it
// swaps from its manifest.
func verifyArtifact(ctx context.Context, f *release.Fetcher, keys *signing.KeySet, app spec.App) (detail, swap string, ok bool) {
	path, err := f.Fetch(ctx, app.Artifact.URL)
	if err != nil {
		return "fetch artifact: " + err.Error(), "", false
	}
	sigPath, err := f.Fetch(ctx, app.Artifact.Signature)
	if err != nil {
		return "fetch signature: " + err.Error(), "", false
	}
	sig, err := regfile.ReadFile(sigPath, signing.MaxSignatureSize)
	if err != nil {
		return "read signature: " + err.Error(), "", false
	}
	v, err := release.Verify(ctx, path, keys, sig, app.Artifact.SHA256, 0)
	if err != nil {
		return err.Error(), "", false
	}
	detail = fmt.Sprintf("signed by %s, sha256 %s", v.KeyID, v.SHA256)
	m, _, err := release.Inspect(ctx, path, release.Limits{})
	if err != nil {
		return detail + "; unsafe or invalid content: " + err.Error(), "", false
	}
	return detail, reconciler.SwapOf(m.Driver, len(m.Listen)), true
}

// swapWarnings warns, per change, about releases that cannot be hot-swapped.
func swapWarnings(rep *diffReport) {
	for _, s := range rep.Signatures {
		if s.Swap != reconciler.SwapStopStart {
			continue
		}
		for i := range rep.Changes {
			if rep.Changes[i].App == s.App {
				rep.Changes[i].Warnings = append(rep.Changes[i].Warnings, fmt.Sprintf(
					"release %s %s swaps %s: each node refuses requests during its switch; declare the sockets in its release.json listen for a hot swap",
					s.App, s.Version, reconciler.SwapStopStartText))
			}
		}
	}
}
