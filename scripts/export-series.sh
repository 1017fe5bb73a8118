#!/bin/sh
# Write the change as git format-patch series that apply with "git am" to
# a pristine upstream tree, from patches/series:
#   OUT/socket-buffer/  the libcriu socket buffer fix, on its own (it is
#                       not part of --tmp-file and can go upstream alone)
#   OUT/unseized/       seize: no resume of a task never seized (a dump
#                       refused before the freeze logged a second error)
#   OUT/libcriu-errmsg/ lib/c: criu_get_last_errmsg()
#   OUT/tmp-file/       every other patch, each commit carrying the
#                       overlay's new files that it builds or uses
#                       (overlay_patch_of in scripts/overlay.conf), so that
#                       every commit builds on its own (check-series.sh).
# Each series applies to the pristine release without the other.
#
# Every commit is authored and signed off by whoever exports (CRIU's
# CONTRIBUTING.md: the real name of the submitter): git config user.name
# and user.email, read at export time. Without them this fails.
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

# The exporter's identity, as git sees it here (repository, global or
# system configuration, or GIT_CONFIG_* in the environment).
name=$(git config user.name || true)
email=$(git config user.email || true)
if [ -z "$name" ] || [ -z "$email" ]; then
	die "no git identity to sign the series off with: set yours (git config --global user.name \"Your Name\"; git config --global user.email you@example.org); CRIU takes patches signed off by the real name of whoever submits them"
fi

# The identity the project's own files carry (zdtm's test_author), as a
# placeholder for the exporter's.
PLACEHOLDER="criu --tmp-file developers <tmp-file@criu.invalid>"

# Series of their own, as NAME:WORD (WORD in the patch's file name); the
# other patches make the tmp-file series.
SEPARATE="socket-buffer:make-room-for-a-big-request unseized:do-not-resume-a-task-that-was-never libcriu-errmsg:criu_get_last_errmsg"
series_of() {
	for s in $SEPARATE; do
		case $1 in *"${s#*:}"*) echo "${s%%:*}"; return ;; esac
	done
	echo tmp-file
}
PATCHES=$(grep -v '^#' patches/series)
SERIES=$(for p in $PATCHES; do series_of "$p"; done | awk '!seen[$0]++')

git clone -q "$TREE" "$WORK/tree"
g() { git -C "$WORK/tree" "$@"; }
g config user.name "$name"
g config user.email "$email"

for s in $SERIES; do
	g checkout -q -B "$s" upstream
	for p in $PATCHES; do
		[ "$(series_of "$p")" = "$s" ] || continue
		g am -q "$TOP/patches/$p" || die "patches/$p does not apply to pristine $VERSION in the $s series"
		for f in $(overlay_files); do
			case $p in *"$(overlay_patch_of "$f")"*) ;; *) continue ;; esac
			mkdir -p "$WORK/tree/$(dirname "$f")"
			cp -p "$f" "$WORK/tree/$f"
			# zdtm's test_author: the tests' author is whoever submits them
			if grep -qF "$PLACEHOLDER" "$f"; then
				sed "s/$PLACEHOLDER/$(printf '%s <%s>' "$name" "$email" | sed 's/[\/&]/\\&/g')/" "$f" >"$WORK/tree/$f"
			fi
			g add -f "$f"
		done
		g commit -q --amend --no-edit --reset-author --signoff
	done
	rm -rf "${OUT:?}/$s"
	mkdir -p "$OUT/$s"
	g format-patch -q --no-signature -o "$OUT/$s" upstream..HEAD
done

# Fixes to upstream files that --tmp-file does not need at all, kept as
# patches of their own (patches/standalone/): a series each, named after
# the patch, re-authored and signed off by the exporter like the others.
for p in patches/standalone/*.patch; do
	[ -e "$p" ] || continue
	s=$(basename "$p" .patch | sed 's/^[0-9]*-//')
	g checkout -q -B "$s" upstream
	g am -q "$TOP/$p" || die "$p does not apply to pristine $VERSION"
	g log -1 --format=%B | grep -v '^Signed-off-by: ' >"$WORK/msg"
	g commit -q --amend --reset-author --signoff -F "$WORK/msg"
	rm -rf "${OUT:?}/$s"
	mkdir -p "$OUT/$s"
	g format-patch -q --no-signature -o "$OUT/$s" upstream..HEAD
	SERIES="$SERIES $s"
done
rm -f "$OUT"/*.patch # a flat series from before the split

# No trace of the old made-up identity, and every commit signed off once.
! grep -l 'tmp-file@criu\.invalid' "$OUT"/*/*.patch >/dev/null ||
	die "a patch in $OUT still carries the made-up identity tmp-file@criu.invalid"
for f in "$OUT"/*/*.patch; do
	[ "$(grep -cFx "Signed-off-by: $name <$email>" "$f")" = 1 ] ||
		die "$f is not signed off once by $name <$email>"
done
# The cover letter of the tmp-file series (no sign-off: written after the check)
./scripts/cover-letter.sh "$OUT/tmp-file"
for s in $SERIES; do
	echo "export-series: $s: $(find "$OUT/$s" -name '*.patch' | wc -l) patch(es) in $OUT/$s/, signed off by $name <$email>"
done
