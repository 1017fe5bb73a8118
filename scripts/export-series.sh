#!/bin/sh
# Write the whole change as a git format-patch series that applies with
# "git am" to a pristine upstream tree: first the overlay's new files, then
# patches/series.
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
. scripts/overlay.conf
TREE=${TREE:-build/criu-$VERSION}
OUT=${1:-dist}
TOP=$(pwd)
case $OUT in /*) ;; *) OUT=$TOP/$OUT ;; esac
WORK=build/export

die() { echo "export-series: $*" >&2; exit 1; }
[ -d "$TREE/.git" ] || die "no build tree; run 'make tree' first"

rm -rf "$WORK" "$OUT"
git clone -q "$TREE" "$WORK"
git -C "$WORK" checkout -q -B tmp-file upstream
git -C "$WORK" config user.name "criu --tmp-file developers"
git -C "$WORK" config user.email "tmp-file@criu.invalid"

for f in $(overlay_files); do
	mkdir -p "$WORK/$(dirname "$f")"
	cp -p "$f" "$WORK/$f"
	git -C "$WORK" add -f "$f"
done
git -C "$WORK" commit -q -s -F - <<'MSG'
criu: add the --tmp-file sources

New files only, not built yet: criu/tmp-files.c saves the files named
with --tmp-file into the images at dump (GNU tar, run while the tree is
frozen) and puts them back before the tree is restored;
images/tmp-file.proto describes the manifest image; tests and docs.

The following patches wire them into the option parser, the image
descriptors, dump, restore, RPC and libcriu.
MSG

for p in $(grep -v '^#' patches/series); do
	git -C "$WORK" am -q "$TOP/patches/$p" || die "patches/$p does not apply"
done
mkdir -p "$OUT"
git -C "$WORK" format-patch -q --no-signature -o "$OUT" upstream..HEAD
rm -rf "$WORK"
echo "export-series: $(ls "$OUT" | wc -l) patch(es) in $OUT/"
