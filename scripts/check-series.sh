#!/bin/sh
# Check the series for upstream (make upstream-patch): each of them
# (socket-buffer, tmp-file, unseized, libcriu-errmsg) applies with "git am" to the pristine pinned
# release on its own, every commit of it builds on its own, as CRIU's CI
# builds every commit of a pull request, and every commit is authored and
# signed off by the exporter.
#
# The export takes the git identity configured here; when there is none,
# this check exports as "check-series <check-series@localhost>" (a test
# export: make upstream-patch itself refuses to run without an identity).
#
# Usage: scripts/check-series.sh [WORKDIR]   (default build/check-series)
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
WORK=$(realpath -m "${1:-build/check-series}")
JOBS=${JOBS:-$(nproc)}

die() { echo "check-series: $*" >&2; exit 1; }

if [ -z "$(git config user.name || true)" ] || [ -z "$(git config user.email || true)" ]; then
	echo "check-series: no git identity set: exporting as check-series <check-series@localhost>"
	export GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_0=user.name GIT_CONFIG_VALUE_0=check-series \
		GIT_CONFIG_KEY_1=user.email GIT_CONFIG_VALUE_1=check-series@localhost
fi
ident="$(git config user.name) <$(git config user.email)>"

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

total=0 counts=
# The tmp-file series last: the tree is left with it checked out
for dir in $(ls -d "$WORK"/dist/*/ | grep -v '/tmp-file/$') "$WORK/dist/tmp-file/"; do
	s=$(basename "$dir")
	g checkout -q -B "$s" pristine
	# shellcheck disable=SC2046 # file names without spaces
	g am -q $(ls "$dir"*.patch | grep -v '/0000-cover-letter\.patch$') || die "the $s series does not apply with git am to pristine $VERSION"
	n=0
	for c in $(g rev-list --reverse pristine..HEAD); do
		n=$((n + 1))
		subject=$(g log -1 --format=%s "$c")
		[ "$(g log -1 --format='%an <%ae>' "$c")" = "$ident" ] ||
			die "$s commit $n \"$subject\": the author is not $ident"
		if [ "$(g log -1 --format=%B "$c" | grep -c '^Signed-off-by: ')" != 1 ] ||
			! g log -1 --format=%B "$c" | grep -qFx "Signed-off-by: $ident"; then
			die "$s commit $n \"$subject\": not signed off once, by $ident"
		fi
		g checkout -q "$c"
		# criu and libcriu, and zdtm's tests once they are in the series
		if ! make -s -C "$WORK/tree" -j"$JOBS" criu lib >"$WORK/build.log" 2>&1; then
			tail -n 30 "$WORK/build.log" >&2
			die "$s commit $n \"$subject\" does not build"
		fi
		# shellcheck disable=SC2046 # test names without spaces
		tests=$(grep -o 'tmp_file0[0-9]' "$WORK/tree/test/zdtm/static/Makefile" | sort -u)
		if [ -n "$tests" ] &&
		   ! { make -s -C "$WORK/tree/test/zdtm/lib" -j"$JOBS" &&
		       make -s -C "$WORK/tree/test/zdtm/static" -j"$JOBS" $tests; } \
			>"$WORK/build.log" 2>&1; then
			tail -n 30 "$WORK/build.log" >&2
			die "$s commit $n \"$subject\": the zdtm tests do not build"
		fi
		echo "check-series: $s commit $n builds: $subject"
	done
	total=$((total + n))
	counts="$counts${counts:+, }$s: $n"
done
echo "check-series: all $total commits ($counts) apply to pristine $VERSION and build, signed off by $ident"
