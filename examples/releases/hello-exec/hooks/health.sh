#!/bin/sh
# health: this version is the active one, and the release is not marked
# broken (a file named "broken" in the release makes a failing version).
set -eu
test "$(cat "$HELLO_STATE/active")" = "$RECONCILER_VERSION"
if [ -e broken ]; then
	echo "hello $RECONCILER_VERSION is broken" >&2
	exit 1
fi
