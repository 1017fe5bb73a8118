#!/bin/sh
# Check that the series for upstream (make upstream-patch) applies with
# "git am" to the pristine pinned release and that every commit of it
# builds on its own, as CRIU's CI builds every commit of a pull request.
#
# Usage: scripts/check-series.sh [WORKDIR]   (default build/check-series)
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
WORK=$(realpath -m "${1:-build/check-series}")
JOBS=${JOBS:-$(nproc)}

die() { echo "check-series: $*" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/tree"
./scripts/export-series.sh "$WORK/dist" >/dev/null
./scripts/fetch-upstream.sh
tar -xJf "build/cache/$TARBALL" -C "$WORK/tree" --strip-components=1
g() { git -C "$WORK/tree" -c user.name=check -c user.email=check@invalid "$@"; }
g init -q
g add -A -f .
g commit -q -m "criu $VERSION (pristine)"
g tag pristine
g am -q "$WORK"/dist/*.patch || die "the series does not apply with git am to pristine $VERSION"

n=0
for c in $(g rev-list --reverse pristine..HEAD); do
	n=$((n + 1))
	subject=$(g log -1 --format=%s "$c")
	g checkout -q "$c"
	# criu and libcriu, and zdtm's tests once they are in the series
	if ! make -s -C "$WORK/tree" -j"$JOBS" criu lib >"$WORK/build.log" 2>&1; then
		tail -n 30 "$WORK/build.log" >&2
		die "commit $n \"$subject\" does not build"
	fi
	if grep -q tmp_file00 "$WORK/tree/test/zdtm/static/Makefile" &&
	   ! { make -s -C "$WORK/tree/test/zdtm/lib" -j"$JOBS" &&
	       make -s -C "$WORK/tree/test/zdtm/static" -j"$JOBS" tmp_file00 tmp_file01 tmp_file02 tmp_file03 tmp_file04; } \
		>"$WORK/build.log" 2>&1; then
		tail -n 30 "$WORK/build.log" >&2
		die "commit $n \"$subject\": the zdtm tests do not build"
	fi
	echo "check-series: commit $n builds: $subject"
done
echo "check-series: all $n commits apply to pristine $VERSION and build"
