#!/usr/bin/env bash
# Builds the counter fixture's relx release tarballs into OUTDIR:
#
#   counter-1.0.0.tar.gz   the first release
#   counter-1.1.0.tar.gz   with releases/1.1.0/relup (1.0.0 <-> 1.1.0)
#   counter-1.2.0.tar.gz   with releases/1.2.0/relup (1.1.0 <-> 1.2.0); its
#                          health check fails
#   counter-1.3.0.tar.gz   with releases/1.3.0/relup (1.1.0 <-> 1.3.0); its
#                          relup crashes
#
# and, for each version V, the directory OUTDIR/counter-V/ to pack as a
# reconciler release (release.json with driver "otp" and the tarball):
#
#   reconciler release pack OUTDIR/counter-V --app counter --version V \
#       -o counter-V.release.tar.gz
#
# Usage: examples/otp/build.sh OUTDIR
#
# Needs erl and rebar3 (Debian: apt-get install erlang rebar3). The build
# runs in a scratch copy, so this directory stays clean. Set
# COUNTER_VERSIONS to build fewer versions. Each version's relup leads from
# the version built before it, or from the one named in versions/V/upfrom.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
versions=(${COUNTER_VERSIONS:-1.0.0 1.1.0 1.2.0 1.3.0})

work="$(mktemp -d)"
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
cp -R "$here/rebar.config" "$here/config" "$work/"
# rebar3 keeps its cache under HOME; keep it in the scratch copy too unless
# the caller chose one.
export REBAR_CACHE_DIR="${REBAR_CACHE_DIR:-$work/.cache}"
export REBAR_COLOR=none

cd "$work"
prev=""
for v in "${versions[@]}"; do
	rm -rf src ebin
	mkdir src ebin
	cp "$here"/src/*.erl "$here/versions/$v"/*.erl "$here/versions/$v"/*.app.src src/
	# rebar3 copies ebin/*.appup of the application into the build.
	if [ -f "$here/versions/$v/counter.appup" ]; then
		cp "$here/versions/$v/counter.appup" ebin/
	fi
	sed -i "s/{release, {counter, \"[^\"]*\"}/{release, {counter, \"$v\"}/" rebar.config
	grep -q "{release, {counter, \"$v\"}" rebar.config
	# Every release goes to the same _build/default/rel/counter, so that the
	# relup step finds the previous release beside the new one.
	rebar3 release -n counter -v "$v"
	from="$prev"
	if [ -f "$here/versions/$v/upfrom" ]; then
		from="$(cat "$here/versions/$v/upfrom")"
	fi
	if [ -n "$from" ]; then
		rebar3 relup -n counter -v "$v" -u "$from"
	fi
	rebar3 tar -n counter -v "$v"
	cp "_build/default/rel/counter/counter-$v.tar.gz" "$out/"
	mkdir -p "$out/counter-$v"
	cp "$out/counter-$v.tar.gz" "$out/counter-$v/"
	cat >"$out/counter-$v/release.json" <<JSON
{
  "app": "counter",
  "version": "$v",
  "driver": "otp",
  "env": {"COUNTER_HTTP_PORT": "8080"},
  "health": {"http": "http://127.0.0.1:8080/health"}
}
JSON
	prev="$v"
done
ls -l "$out"/*.tar.gz
