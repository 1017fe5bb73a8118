#!/bin/sh
# Assemble build/criu-$VERSION: pristine upstream (a git repository, tag
# "upstream"), then patches/series as one commit per patch, then the
# overlay (this repository's new files at their in-tree paths).
#
# Re-running is cheap: patches are re-applied only when patches/ changed,
# overlay files are copied only when their content changed (so make rebuilds
# only what changed). Edits made inside the build tree are never discarded:
# if re-applying or copying would overwrite them, this stops and says so.
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
. scripts/overlay.conf
TREE=${TREE:-build/criu-$VERSION}
TOP=$(pwd)

die() { echo "assemble: $*" >&2; exit 1; }
g() { git -C "$TREE" "$@"; }

./scripts/fetch-upstream.sh

# 1. Pristine tree, committed and tagged.
if [ ! -d "$TREE/.git" ]; then
	[ ! -e "$TREE" ] || die "$TREE exists but is not a git repository; remove it"
	tmp="$TREE.tmp"
	rm -rf "$tmp" && mkdir -p "$tmp"
	tar -xJf "build/cache/$TARBALL" -C "$tmp" --strip-components=1
	git -C "$tmp" init -q
	git -C "$tmp" config user.name "criu --tmp-file developers"
	git -C "$tmp" config user.email "tmp-file@criu.invalid"
	git -C "$tmp" config core.autocrlf false
	git -C "$tmp" add -A -f .
	git -C "$tmp" commit -q -m "criu $VERSION (pristine $TARBALL)"
	git -C "$tmp" tag upstream
	mv "$tmp" "$TREE"
fi

# 2. The patch series.
stamp_file="$TREE/.git/tmpfile-patches.stamp"
stamp=$(cd patches && cat series $(grep -v '^#' series) 2>/dev/null | sha256sum | cut -d' ' -f1)
old_stamp=$(cut -d' ' -f1 "$stamp_file" 2>/dev/null || true)
old_head=$(cut -d' ' -f2 "$stamp_file" 2>/dev/null || true)
if [ "$stamp" != "$old_stamp" ]; then
	[ -z "$(g status --porcelain --untracked-files=no)" ] ||
		die "uncommitted edits to upstream files in $TREE; commit them there and run 'make patches' (or 'git -C $TREE stash') first"
	if [ -n "$old_head" ] && [ "$(g rev-parse HEAD)" != "$old_head" ]; then
		die "commits in $TREE are not in patches/ yet; run 'make patches' first"
	fi
	g reset -q --hard upstream
	for p in $(grep -v '^#' patches/series); do
		g am -q --keep-cr "$TOP/patches/$p" || {
			g am --abort
			die "patches/$p does not apply"
		}
	done
	echo "$stamp $(g rev-parse HEAD)" > "$stamp_file"
fi

# 3. The overlay. Remember what was copied, to notice edits made in the tree.
sums="$TREE/.git/tmpfile-overlay.sums"
touch "$sums"
new_sums="$sums.new"
: > "$new_sums"
for f in $(overlay_files); do
	want=$(sha256sum < "$f" | cut -d' ' -f1)
	dst="$TREE/$f"
	if [ -e "$dst" ]; then
		have=$(sha256sum < "$dst" | cut -d' ' -f1)
		if [ "$have" != "$want" ]; then
			g ls-files --error-unmatch "$f" >/dev/null 2>&1 &&
				die "overlay file $f would replace an upstream file; change it through patches/"
			last=$(awk -v f="$f" '$2 == f { print $1 }' "$sums")
			[ "$have" = "$last" ] ||
				die "$dst was edited in the build tree; run 'make patches' to copy it back, or remove it"
			cp "$f" "$dst"
		fi
	else
		mkdir -p "$(dirname "$dst")"
		cp "$f" "$dst"
	fi
	[ -x "$f" ] && chmod +x "$dst"
	echo "$want $f" >> "$new_sums"
done
# Files dropped from the overlay go away, unless edited in the tree.
awk '{ print $2 }' "$sums" | while read -r f; do
	grep -q " $f\$" "$new_sums" && continue
	[ -e "$TREE/$f" ] || continue
	last=$(awk -v f="$f" '$2 == f { print $1 }' "$sums")
	[ "$(sha256sum < "$TREE/$f" | cut -d' ' -f1)" = "$last" ] ||
		die "$TREE/$f was removed from the overlay but edited in the build tree"
	rm -f "$TREE/$f"
done
mv "$new_sums" "$sums"
# Keep overlay files out of "git status" in the tree.
cut -d' ' -f2 "$sums" | sed 's|^|/|' > "$TREE/.git/info/exclude"
