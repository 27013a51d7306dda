// Package release handles release artifacts: the release.json manifest,
// reproducible packing, fetching (file, http(s)) with a sha256-keyed cache,
// streaming verification (sha256 and signature while reading) and safe
// unpacking into a staging directory followed by an atomic rename.
//
// Invariant: no byte of an artifact is unpacked or executed before its
// signature (and sha256 pin, when given) has been verified.
//
// The agent's entry point is Fetcher.Install:
//
//	f, err := release.NewFetcher(release.Options{CacheDir: "/var/lib/reconciler/cache"})
//	m, err := f.Install(ctx, release.Source{
//		URL:          "https://releases.example.com/web-1.1.0.tar.gz",
//		SignatureURL: "https://releases.example.com/web-1.1.0.tar.gz.sig",
//		SHA256:       "…", // optional pin
//	}, keys, release.Want{App: "web", Version: "1.1.0"}, "/var/lib/reconciler/releases/web-1.1.0")
//
// Install fetches the signature and the artifact (local files are read in
// place; downloads land in the cache under their sha256, and a pinned
// artifact already there is not downloaded again), reads the artifact once
// to compute its sha256 and check the pin and the signature, then reads it
// again to unpack, checking that those bytes hash to what was verified.
// Unpacking refuses, naming the entry: '..' components, absolute paths,
// symlinks that resolve outside the release (following the archive's other
// symlinks), hardlinks to anything but an earlier regular file, entries
// below a symlink, devices, fifos, duplicates, more than Limits allow (files'
// total size, entry count, decompressed size), a missing or invalid
// release.json, and a manifest naming another app or version than wanted.
// On any failure the staging directory is removed and dest is untouched.
//
// Errors wrap sentinels for callers that branch: signing.ErrNoMatchingKey,
// signing.ErrMalformedSignature, ErrDigestMismatch, ErrNotFound, ErrUnsafe
// (with *UnsafeEntryError naming the entry) and ErrWrongRelease. Network
// failures are retried inside Fetch (Options.Retries); everything else
// is final for this artifact.
//
// The manifest contract is docs/release-manifest.md.
package release
