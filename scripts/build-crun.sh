#!/bin/sh
# Build crun with CRIU support against this project's libcriu, into
# $OUT (default build/crun): $OUT/bin/crun, whose "crun --version" shows
# +CRIU. Debian 12's crun package is built without CRIU, so it cannot
# checkpoint; this is Debian's own source package (the .dsc pinned below
# by its sha256, the tarballs verified by the hashes in the .dsc), built
# as Debian configures it, with libcriu from $TREE (build/criu-VERSION).
#
# crun dlopen()s "libcriu.so.2": $OUT/libcriu/lib/libcriu.so.2 is a link
# to $TREE/lib/c/libcriu.so, and crun's RUNPATH names that directory, so
# the crun of $OUT loads the project's libcriu (rebuilt with the tree)
# unless LD_LIBRARY_PATH says otherwise. libcriu runs "criu swrk" from
# PATH: put the patched criu first on PATH.
#
# The files come from the mirrors in apt's configuration (as
# scripts/fetch-upstream.sh), cached in build/cache. Cached and
# idempotent: nothing is done when $OUT/bin/crun was built from the same
# .dsc, script and paths. The build needs the packages of the "crun"
# group of scripts/install-deps.sh.
set -eu

. "$(dirname "$0")/upstream.conf"
TREE=${TREE:-build/criu-$VERSION}
OUT=${OUT:-build/crun}
CACHE=${CACHE:-build/cache}
JOBS=${JOBS:-$(nproc)}

DSC=crun_1.8.1-1+deb12u1.dsc
DSC_SHA256=1123b9a36a95fc2d05966972f7198f20497f466459b07df4e336db5ba1dc8a45
POOL=pool/main/c/crun

die() { echo "build-crun: $*" >&2; exit 1; }

[ -f "$TREE/lib/c/libcriu.so" ] && [ -f "$TREE/images/rpc.pb-c.h" ] ||
	die "no libcriu in $TREE: run make build first"
mkdir -p "$OUT" "$CACHE"
OUT=$(realpath "$OUT")
CACHE=$(realpath "$CACHE")
TREE=$(realpath "$TREE")
LIBDIR=$OUT/libcriu/lib

stamp="$DSC_SHA256 $(sha256sum <"$0" | cut -d' ' -f1) $TREE $OUT"
if [ -x "$OUT/bin/crun" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ] &&
   [ "$(readlink "$LIBDIR/libcriu.so.2")" = "$TREE/lib/c/libcriu.so" ]; then
	exit 0
fi

# Download $1 into the cache, verified against sha256 $2.
fetch() {
	dest=$CACHE/$1
	if [ -f "$dest" ]; then
		echo "$2  $dest" | sha256sum --quiet -c - >/dev/null 2>&1 && return 0
		die "$dest: sha256 mismatch (corrupted cache?), expected $2; remove it to download again"
	fi
	uris=$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null | sort -u | grep -v -- '-security' || true)
	[ -n "$uris" ] || die "no Debian mirror in apt's configuration; put $1 (sha256 $2) in $CACHE"
	for uri in $uris; do
		rm -f "$dest.tmp"
		if /usr/lib/apt/apt-helper -qq download-file "${uri%/}/$POOL/$1" "$dest.tmp" "SHA256:$2" >/dev/null 2>&1 &&
		   echo "$2  $dest.tmp" | sha256sum --quiet -c - >/dev/null 2>&1; then
			mv "$dest.tmp" "$dest"
			return 0
		fi
	done
	rm -f "$dest.tmp"
	die "cannot download $1 (sha256 $2) from the apt mirrors ($(echo $uris)); put it in $CACHE to build offline"
}

fetch "$DSC" "$DSC_SHA256"
# The files the .dsc lists, with their sha256 (the lines after
# "Checksums-Sha256:" up to the next field).
files=$(sed -n '/^Checksums-Sha256:/,/^[^ ]/s/^ \([0-9a-f]\{64\}\) [0-9]* \(.*\)$/\1 \2/p' "$CACHE/$DSC")
[ -n "$files" ] || die "$CACHE/$DSC lists no files"
echo "$files" | while read -r sum name; do fetch "$name" "$sum"; done

echo "build-crun: building crun from $DSC against $TREE/lib/c"
# libcriu as crun's configure wants it: pkg-config "criu", <criu/criu.h>.
rm -rf "${OUT:?}/libcriu" "${OUT:?}/src" "${OUT:?}/bin" "${OUT:?}/.stamp"
mkdir -p "$LIBDIR" "$OUT/libcriu/include/criu" "$OUT/bin"
ln -s "$TREE/lib/c/libcriu.so" "$LIBDIR/libcriu.so.2"
ln -s "$TREE/lib/c/libcriu.so" "$LIBDIR/libcriu.so"
for h in lib/c/criu.h images/rpc.pb-c.h criu/include/version.h; do
	ln -s "$TREE/$h" "$OUT/libcriu/include/criu/"
done
cat >"$OUT/libcriu/criu.pc" <<EOF
Name: CRIU
Description: libcriu of $TREE
Version: $VERSION
Libs: -L$LIBDIR -lcriu
Cflags: -I$OUT/libcriu/include -I$OUT/libcriu/include/criu
EOF

log=$OUT/build.log
# On a failure, what a reader needs: the step, its exit status, the
# error lines wherever they are in a parallel build's log, and its end.
failed() {
	echo "build-crun: $1 failed (exit $2); error lines of $log, then its end:" >&2
	grep -n -E 'error|Error|\*\*\*|Killed|fatal|No space|Terminated' "$log" | tail -20 >&2 || true
	tail -15 "$log" >&2
}
# step NAME COMMAND...: run COMMAND in $OUT/src, its output in $log.
step() {
	name=$1
	shift
	echo "build-crun: step $name: $*" >>"$log"
	(cd "$OUT/src" && "$@") >>"$log" 2>&1
}
: >"$log"
(cd "$OUT" && dpkg-source -q --no-check -x "$CACHE/$DSC" src) >>"$log" 2>&1 ||
	{ failed "dpkg-source -x" $?; die "build failed: $log"; }
step configure env PKG_CONFIG_PATH="$OUT/libcriu" ./configure --prefix=/usr \
	CPPFLAGS="-I$OUT/libcriu/include" LDFLAGS="-Wl,-rpath,$LIBDIR" ||
	{ failed configure $?; die "build failed: $log"; }
step version make -j"$JOBS" .version git-version.h ||
	{ failed "make .version" $?; die "build failed: $log"; }
# A parallel make of crun once stopped in a CI run with nothing in its
# log but libocispec's end; it did not happen again here. A failed
# parallel make is said, with its error lines, and run again serially
# (make goes on from where it stopped): a real error fails again.
if ! step crun make -j"$JOBS" crun; then
	failed "make -j$JOBS crun" $?
	echo "build-crun: making crun again with -j1" >&2
	step crun-serial make -j1 crun || { failed "make -j1 crun" $?; die "build failed: $log"; }
fi
cp "$OUT/src/crun" "$OUT/bin/crun"

version=$("$OUT/bin/crun" --version) || die "$OUT/bin/crun --version failed"
echo "$version" | grep -q '+CRIU' || die "$OUT/bin/crun was built without CRIU: $(echo "$version" | tail -1)"
echo "$stamp" >"$OUT/.stamp"
echo "build-crun: built $OUT/bin/crun ($(echo "$version" | head -1), $(echo "$version" | tail -1))"
