// Package release handles release artifacts: the release.json manifest,
// reproducible packing, fetching (file, http(s)) with a sha256-keyed cache,
// streaming verification (sha256 and signature while reading) and safe
// unpacking into a staging directory followed by an atomic rename.
//
// Invariant: no byte of an artifact is unpacked or executed before its
// signature (and sha256 pin, when given) has been verified.
package release
