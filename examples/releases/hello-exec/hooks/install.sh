#!/bin/sh
# install: prepare what activate needs (here: the state directory).
set -eu
mkdir -p "$HELLO_STATE"
echo "hello $RECONCILER_VERSION installed from $RECONCILER_RELEASE_DIR"
