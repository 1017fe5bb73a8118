#!/bin/sh
# Write the whole change as a git format-patch series that applies with
# "git am" to a pristine upstream tree: patches/series, each commit
# carrying the overlay's new files that it builds or uses
# (overlay_patch_of in scripts/overlay.conf), so that every commit of the
# series builds on its own (scripts/check-series.sh checks it).
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
. scripts/overlay.conf
TREE=${TREE:-build/criu-$VERSION}
OUT=${1:-dist}
TOP=$(pwd)
case $OUT in /*) ;; *) OUT=$TOP/$OUT ;; esac
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/criu-export.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

die() { echo "export-series: $*" >&2; exit 1; }
[ -d "$TREE/.git" ] || die "no build tree; run 'make tree' first"

# Every overlay file must belong to exactly one patch of the series.
for f in $(overlay_files); do
	word=$(overlay_patch_of "$f") || die "$f: no patch for it in overlay_patch_of (scripts/overlay.conf)"
	n=$(grep -v '^#' patches/series | grep -c -- "$word" || true)
	[ "$n" = 1 ] || die "$f: $n patches of patches/series match \"$word\", expected one"
done

rm -rf "$OUT"
git clone -q "$TREE" "$WORK/tree"
g() { git -C "$WORK/tree" "$@"; }
g checkout -q -B tmp-file upstream
g config user.name "criu --tmp-file developers"
g config user.email "tmp-file@criu.invalid"

for p in $(grep -v '^#' patches/series); do
	g am -q "$TOP/patches/$p" || die "patches/$p does not apply"
	added=
	for f in $(overlay_files); do
		case $p in *"$(overlay_patch_of "$f")"*) ;; *) continue ;; esac
		mkdir -p "$WORK/tree/$(dirname "$f")"
		cp -p "$f" "$WORK/tree/$f"
		g add -f "$f"
		added=1
	done
	[ -z "$added" ] || g commit -q --amend --no-edit
done
mkdir -p "$OUT"
g format-patch -q --no-signature -o "$OUT" upstream..HEAD
echo "export-series: $(ls "$OUT" | wc -l) patch(es) in $OUT/"
