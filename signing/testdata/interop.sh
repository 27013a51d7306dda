#!/usr/bin/env bash
# Live interop between reconciler and a real cosign v2.6.5, both directions
# (`make interop`). Installs cosign with go install if it is missing. Offline
# is fine: cosign verify-blob warns that it cannot reach the TUF root, then
# checks the signature; ed25519ph signing goes through a fake Rekor on loopback.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
COSIGN_VERSION=v2.6.5

cosign=$(command -v cosign || true)
if [[ -z $cosign ]] || ! "$cosign" version 2>/dev/null | grep -q "GitVersion: *$COSIGN_VERSION\$"; then
  cosign=$(go env GOPATH)/bin/cosign
  if ! "$cosign" version 2>/dev/null | grep -q "GitVersion: *$COSIGN_VERSION\$"; then
    echo "installing cosign $COSIGN_VERSION (slow the first time)"
    go install github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION
  fi
fi

work=$(mktemp -d)
trap 'kill ${REKOR_PID:-} 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/reconciler" "$repo/cmd/reconciler"
go build -o "$work/fakerekor" "$here/fakerekor"
cd "$work"
rec=$work/reconciler
export COSIGN_PASSWORD=interop RECONCILER_PASSWORD=interop
pass=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
cosign_verify() { "$cosign" verify-blob --insecure-ignore-tlog --key "$1" --signature "$2" "$3" 2>cosign.err; }

mkdir -p app/bin && printf '#!/bin/sh\necho hi\n' > app/bin/web && chmod +x app/bin/web
echo '{"command": ["bin/web"]}' > app/release.json
"$rec" release pack app --app web --version 1.1.0 -o web.tar.gz >/dev/null

# cosign -> reconciler: ECDSA P-256.
"$cosign" generate-key-pair --output-key-prefix cosign >/dev/null 2>&1
"$cosign" sign-blob --yes --tlog-upload=false --key cosign.key --output-signature web.cosign.sig web.tar.gz >/dev/null 2>&1
"$rec" verify --key cosign.pub --signature web.cosign.sig web.tar.gz >/dev/null
"$rec" release inspect --key cosign.pub --signature web.cosign.sig web.tar.gz >/dev/null
ok "cosign sign-blob (ECDSA) -> reconciler verify and release inspect"

# cosign -> reconciler: ed25519, which cosign signs ed25519ph on its tlog path.
openssl genpkey -algorithm ed25519 -out ed.pem
"$cosign" import-key-pair --key ed.pem --output-key-prefix ed >/dev/null 2>&1
coproc REKOR { exec "$work/fakerekor"; }
read -r rekor <&"${REKOR[0]}"
"$cosign" sign-blob --yes --key ed.key --rekor-url "$rekor" --output-signature web.edph.sig web.tar.gz >/dev/null 2>&1
"$rec" verify --key cosign.pub --key ed.pub --signature web.edph.sig web.tar.gz | grep -q 'key ed.pub'
ok "cosign sign-blob (ed25519ph) -> reconciler verify"

# reconciler -> cosign: ECDSA key made by reconciler keygen.
"$rec" keygen --output-key-prefix rec >/dev/null
"$rec" sign --key rec.key web.tar.gz >/dev/null
cosign_verify rec.pub web.tar.gz.sig web.tar.gz || { cat cosign.err; exit 1; }
ok "reconciler keygen + sign -> cosign verify-blob"

# reconciler -> cosign: cosign signs with reconciler's key; reconciler signs with cosign's.
"$cosign" sign-blob --yes --tlog-upload=false --key rec.key --output-signature web.rec-by-cosign.sig web.tar.gz >/dev/null 2>&1
"$rec" verify --key rec.pub --signature web.rec-by-cosign.sig web.tar.gz >/dev/null
"$rec" sign --key cosign.key --output-signature web.cosign-by-rec.sig web.tar.gz >/dev/null
cosign_verify cosign.pub web.cosign-by-rec.sig web.tar.gz || { cat cosign.err; exit 1; }
ok "keys cross over: cosign reads reconciler's key, reconciler reads cosign's"

# reconciler -> cosign: ed25519 (plain, what verify-blob --key checks).
"$rec" sign --key ed.key --output-signature web.ed.sig web.tar.gz >/dev/null
cosign_verify ed.pub web.ed.sig web.tar.gz || { cat cosign.err; exit 1; }
ok "reconciler sign (ed25519) -> cosign verify-blob"

# Both refuse a tampered artifact.
printf 'x' >> web.tar.gz
if cosign_verify rec.pub web.tar.gz.sig web.tar.gz; then echo "cosign accepted a tampered file"; exit 1; fi
if "$rec" verify --key cosign.pub --signature web.cosign.sig web.tar.gz 2>/dev/null; then echo "reconciler accepted a tampered file"; exit 1; fi
ok "both refuse a tampered artifact"
echo "interop with cosign $COSIGN_VERSION: $pass checks passed"
