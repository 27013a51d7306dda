#!/bin/sh
# rollback: make the previous version active again; with no previous
# version (a failed first install, or the agent stopping the app), deactivate.
set -eu
if [ -z "${RECONCILER_PREVIOUS_VERSION:-}" ]; then
	rm -f "$HELLO_STATE/active"
	echo "hello deactivated"
	exit 0
fi
printf '%s\n' "$RECONCILER_PREVIOUS_VERSION" > "$HELLO_STATE/active.tmp"
mv "$HELLO_STATE/active.tmp" "$HELLO_STATE/active"
echo "hello rolled back to $RECONCILER_PREVIOUS_VERSION"
