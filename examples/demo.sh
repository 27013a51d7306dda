#!/usr/bin/env bash
# make demo: the best real thing available so far (see README "Status").
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== validate examples/fleet"
./bin/reconciler validate examples/fleet || true
echo
echo "The fleet demo (five agents, rolling upgrade, canary rollback) is not built yet."
