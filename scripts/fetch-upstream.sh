#!/bin/sh
# Put the pinned upstream CRIU tarball, verified, at $CACHE/$TARBALL.
#
# Source, in order: $CRIU_TARBALL if set (a local file, for offline work),
# the cache, then every Debian mirror URI that the machine's apt is
# configured with (pool/main/c/criu/). The hash is checked every time: a
# wrong or corrupted tarball is an error, never something to build.
set -eu

. "$(dirname "$0")/upstream.conf"
CACHE=${CACHE:-build/cache}
dest="$CACHE/$TARBALL"

die() { echo "fetch-upstream: $*" >&2; exit 1; }

check() {
	echo "$SHA256  $1" | sha256sum --quiet -c - >/dev/null 2>&1
}

mkdir -p "$CACHE"

if [ -n "${CRIU_TARBALL:-}" ]; then
	[ -f "$CRIU_TARBALL" ] || die "CRIU_TARBALL=$CRIU_TARBALL: no such file"
	check "$CRIU_TARBALL" || die "CRIU_TARBALL=$CRIU_TARBALL: sha256 mismatch, expected $SHA256"
	[ "$(realpath "$CRIU_TARBALL")" = "$(realpath -m "$dest")" ] || cp "$CRIU_TARBALL" "$dest.tmp"
	[ -f "$dest.tmp" ] && mv "$dest.tmp" "$dest"
	exit 0
fi

if [ -f "$dest" ]; then
	check "$dest" && exit 0
	die "$dest: sha256 mismatch (corrupted cache?), expected $SHA256; remove it to download again"
fi

# Mirror URIs from apt's own configuration, main archive first.
uris=$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null | sort -u | grep -v -- '-security' || true)
[ -n "$uris" ] || die "no Debian mirror in apt's configuration; set CRIU_TARBALL=/path/to/$TARBALL"

for uri in $uris; do
	url="${uri%/}/pool/main/c/criu/$TARBALL"
	rm -f "$dest.tmp"
	# apt-helper honours apt's proxy settings and checks the hash.
	if /usr/lib/apt/apt-helper -qq download-file "$url" "$dest.tmp" "SHA256:$SHA256" >/dev/null 2>&1 &&
	   check "$dest.tmp"; then
		mv "$dest.tmp" "$dest"
		exit 0
	fi
done
rm -f "$dest.tmp"
die "cannot download $TARBALL (sha256 $SHA256) from the apt mirrors ($(echo $uris)); set CRIU_TARBALL=/path/to/$TARBALL to build offline"
