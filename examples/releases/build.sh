#!/usr/bin/env bash
# build.sh RELEASE VERSION OUTDIR KEY [broken]
#
# Makes the signed artifact OUTDIR/RELEASE-VERSION.tar.gz (+ .sig) of one of
# the example releases in this directory, the way a release pipeline would:
#   web        the example HTTP workload (process driver: hot swap on the
#              agent's socket); "broken" builds a version that fails /health
#   hello-exec a release run by its own hooks (exec driver)
# KEY is a private key from `reconciler keygen` (password in COSIGN_PASSWORD).
set -euo pipefail
rel=$1 version=$2 out=$3 key=$4 broken=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
reconciler=${RECONCILER:-$root/bin/reconciler}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$here/$rel/." "$stage/"
if [ "$rel" = web ]; then
	ldflags="-X main.version=$version"
	[ "$broken" = broken ] && ldflags="$ldflags -X main.broken=true"
	(cd "$root" && go build -ldflags "$ldflags" -o "$stage/bin/workload" ./examples/workload)
fi
mkdir -p "$out"
app=$(sed -n 's/.*"app": *"\([^"]*\)".*/\1/p' "$here/$rel/release.json")
"$reconciler" release pack "$stage" --app "$app" --version "$version" -o "$out/$app-$version.tar.gz"
"$reconciler" sign --key "$key" "$out/$app-$version.tar.gz"
echo "$out/$app-$version.tar.gz"
