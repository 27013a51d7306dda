#!/usr/bin/env bash
# Regenerates the cosign v2.6.5 test vectors in signing/testdata/cosign-v2.6.5/
# (committed; `make test` only reads them). Needs cosign v2.6.5 (installed with
# go install if missing), openssl and go. Run from anywhere:
#   ./signing/testdata/make-vectors.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/cosign-v2.6.5
COSIGN_VERSION=v2.6.5
export COSIGN_PASSWORD=vector-password   # the vectors' private keys are test-only

cosign=$(command -v cosign || true)
if [[ -z $cosign ]] || ! "$cosign" version 2>/dev/null | grep -q "GitVersion: *$COSIGN_VERSION\$"; then
  cosign=$(go env GOPATH)/bin/cosign
  if ! "$cosign" version 2>/dev/null | grep -q "GitVersion: *$COSIGN_VERSION\$"; then
    go install github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION
  fi
fi
echo "using $cosign"

rm -rf "$out" && mkdir -p "$out" && cd "$out"
printf 'reconciler release bytes\nsigned by cosign %s\n' $COSIGN_VERSION > blob.txt

# ECDSA P-256, as `cosign generate-key-pair` makes it.
"$cosign" generate-key-pair --output-key-prefix ecdsa
"$cosign" sign-blob --yes --tlog-upload=false --key ecdsa.key --output-signature ecdsa.sig blob.txt

# ed25519: cosign cannot generate one; it imports a PKCS#8 key.
openssl genpkey -algorithm ed25519 -out ed25519.pem
"$cosign" import-key-pair --key ed25519.pem --output-key-prefix ed25519

# cosign v2.6.5 signs ed25519 pre-hashed (ed25519ph) and only on its
# transparency-log path (with --tlog-upload=false it panics: "requested hash
# function #0 is unavailable"). A fake Rekor on loopback takes that path
# offline and publishes nothing.
go build -o "$out/.fakerekor" "$here/fakerekor"
coproc REKOR { exec "$out/.fakerekor"; }
trap 'kill $REKOR_PID 2>/dev/null || true; rm -f "$out/.fakerekor"' EXIT
read -r rekor <&"${REKOR[0]}"
"$cosign" sign-blob --yes --key ed25519.key --rekor-url "$rekor" --output-signature ed25519ph.sig blob.txt

# Plain ed25519 (what `cosign verify-blob --key` checks), made by openssl as
# an independent implementation.
openssl pkeyutl -sign -rawin -inkey ed25519.pem -in blob.txt | base64 -w0 > ed25519.sig

"$cosign" version 2>/dev/null | grep -E 'GitVersion|GoVersion' > VERSION
echo "vectors written to $out"
ls -l "$out"
