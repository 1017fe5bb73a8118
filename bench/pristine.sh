#!/bin/sh
# Build an UNPATCHED CRIU from the pinned, sha256-verified upstream tarball
# into build/bench-pristine/, for the benchmark's baseline. Cheap when done.
set -eu
cd "$(dirname "$0")/.."
. scripts/upstream.conf

DEST=build/bench-pristine
BIN=$DEST/criu-$VERSION/criu/criu
JOBS=${JOBS:-$(nproc)}

./scripts/fetch-upstream.sh
if [ ! -x "$BIN" ]; then
	echo "bench: building unpatched criu $VERSION in $DEST (once, a few minutes)"
	rm -rf "$DEST"
	mkdir -p "$DEST"
	tar -xJf "build/cache/$TARBALL" -C "$DEST"
	[ -d "$DEST/criu-$VERSION" ] || { echo "bench: unexpected tarball layout" >&2; exit 1; }
	if ! make -s -C "$DEST/criu-$VERSION" -j"$JOBS" criu >"$DEST/build.log" 2>&1; then
		tail -30 "$DEST/build.log" >&2
		echo "bench: pristine build failed, see $DEST/build.log" >&2
		exit 1
	fi
fi
echo "$BIN"
