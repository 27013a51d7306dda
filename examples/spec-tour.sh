#!/usr/bin/env bash
# make tour: validate and plan the example fleet repo, and show how mistakes are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/reconciler
go build -o "$bin" ./cmd/reconciler

step() { printf '\n== %s\n' "$*"; }

step "reconciler validate examples/fleet"
"$bin" validate examples/fleet

for app in workload snake_game metrics_relay ledger; do
	step "reconciler plan examples/fleet $app"
	"$bin" plan examples/fleet "$app"
done

step "reconciler plan examples/fleet snake_game --output json"
"$bin" plan examples/fleet snake_game --output json

step "a fleet with mistakes: every one is reported as file:line:col (exit 1)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bad"
cat >"$tmp/bad/apps.cue" <<'CUE'
package fleet

apps: web: {
	version: "1.2"
	artifact: url: "https://releases.example.com/web-1.2.tar.gz"
	rollout: {strategy: "blue_green", batchsize: 2}
	health: {http: "http://127.0.0.1:8080/health", tcp: "127.0.0.1:8080"}
}

// Written but left abstract, an FTP artifact, a shell chosen by the fleet
// repo, a name that cannot be a ref: all refused, none takes a default.
apps: api: {
	version: "1.0.0"
	artifact: url: "ftp://releases.example.com/api-1.0.0.tar.gz"
	rollout: batchSize: _size
	health: exec: ["/bin/sh", "-c", "curl -f http://127.0.0.1:9000/"]
	nodes: ["eu-1", "../x"]
}
_size: int
CUE
if (cd "$tmp" && "$bin" validate bad); then
	echo "expected validate to fail" >&2
	exit 1
fi

cat <<'NOTE'

That is all the demo does for now: the specs are checked and the waves
planned, but nothing is deployed yet. The fleet demo (local agents upgrading
examples/workload in waves gated by leases, with a canary rollback) is to come.
NOTE
