#!/bin/sh
# activate: make this version the active one, atomically. A real release
# would switch a symlink and restart a systemd unit or a container here.
set -eu
printf '%s\n' "$RECONCILER_VERSION" > "$HELLO_STATE/active.tmp"
mv "$HELLO_STATE/active.tmp" "$HELLO_STATE/active"
echo "hello $RECONCILER_VERSION active (previous: ${RECONCILER_PREVIOUS_VERSION:-none})"
