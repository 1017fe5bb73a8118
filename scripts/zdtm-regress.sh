#!/bin/sh
# Upstream regression guard: run a fixed list of upstream zdtm tests
# (scripts/zdtm-regress.list) with the patched criu and with an unpatched
# criu built from the same pinned tarball, print both side by side, and
# fail if any test passes unpatched and fails patched.
#
# Usage: scripts/zdtm-regress.sh [PATCHED_TREE]   (default build/criu-$VERSION)
#   PRISTINE=dir   where the unpatched tree is built
#                  (default build/criu-$VERSION-pristine)
#   LIST=file      the test list (default scripts/zdtm-regress.list)
#   JOBS=n         make -j
#
# Each line of the list is "zdtm/static/<test> [flavor,...]" (default uns).
# Logs of every run are kept in $OUT (default build/zdtm-regress).
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
TOP=$(pwd)
PATCHED=${1:-build/criu-$VERSION}
PRISTINE=${PRISTINE:-build/criu-$VERSION-pristine}
LIST=${LIST:-scripts/zdtm-regress.list}
OUT=${OUT:-build/zdtm-regress}
JOBS=${JOBS:-$(nproc)}
PYTHON=/usr/bin/python3
# zdtm.py re-executes itself through "env python3": use the system one,
# which has protobuf and yaml
export PYENV_VERSION=system
export PATH="/usr/bin:$PATH"

die() { echo "zdtm-regress: $*" >&2; exit 1; }

[ -x "$PATCHED/criu/criu" ] || die "$PATCHED/criu/criu is not built (run 'make build')"

tests() {
	sed -e 's/#.*//' "$LIST" | awk 'NF { print $1 }'
}

# "<test> <flavor>" pairs
runs() {
	sed -e 's/#.*//' "$LIST" | awk 'NF { f = NF > 1 ? $2 : "uns"; n = split(f, a, ","); for (i = 1; i <= n; i++) print $1, a[i] }'
}

# The unpatched tree: the same pinned tarball, nothing applied
build_pristine() {
	./scripts/fetch-upstream.sh
	if [ ! -f "$PRISTINE/.unpacked" ]; then
		rm -rf "$PRISTINE"
		mkdir -p "$PRISTINE"
		tar -xJf "build/cache/$TARBALL" -C "$PRISTINE" --strip-components=1
		touch "$PRISTINE/.unpacked"
	fi
	echo "zdtm-regress: building unpatched criu $VERSION in $PRISTINE"
	make -s -C "$PRISTINE" -j"$JOBS" criu lib crit >/dev/null
}

# Only zdtm's library and the listed tests: building all of zdtm is slow
build_tests() {
	make -s -C "$1/test/zdtm/lib" -j"$JOBS" >/dev/null
	make -s -C "$1/test/zdtm/static" -j"$JOBS" $(tests | sed 's|^zdtm/static/||') >/dev/null
}

# run_all TREE LABEL: one zdtm.py per test and flavor, so that every run
# has its own exit status and log; results in $OUT/LABEL.res
run_all() {
	tree=$1 label=$2
	mkdir -p "$OUT/$label"
	: > "$OUT/$label.res"
	runs | while read -r t f; do
		log="$OUT/$label/$(echo "$t" | tr / _).$f.log"
		if (cd "$tree/test" && timeout 300 $PYTHON zdtm.py run -t "$t" -f "$f" -k failed) \
			> "$log" 2>&1 < /dev/null; then
			r=PASS
		else
			r=FAIL
		fi
		# the test's .desc does not allow this flavor, or a feature is missing
		! grep -q "^Skipping $t (" "$log" || r=SKIP
		echo "$t $f $r" >> "$OUT/$label.res"
		printf '  %-8s %-40s %-4s %s\n' "$label" "$t" "$f" "$r"
	done
}

mkdir -p "$OUT"
build_pristine
build_tests "$PRISTINE"
build_tests "$PATCHED"

start=$(date +%s)
echo "zdtm-regress: $(runs | wc -l) runs of $(tests | wc -l) upstream tests, unpatched then patched"
run_all "$PRISTINE" unpatched
run_all "$PATCHED" patched

echo
printf '%-40s %-4s %-9s %-9s\n' TEST FLAVOR UNPATCHED PATCHED
bad=0
while read -r t f u; do
	p=$(awk -v t="$t" -v f="$f" '$1 == t && $2 == f { print $3 }' "$OUT/patched.res")
	mark=
	if [ "$u" = PASS ] && [ "$p" != PASS ]; then
		mark="  <-- REGRESSION (log: $OUT/patched/$(echo "$t" | tr / _).$f.log)"
		bad=$((bad + 1))
	fi
	printf '%-40s %-4s %-9s %-9s%s\n' "$t" "$f" "$u" "$p" "$mark"
done < "$OUT/unpatched.res"

pass_u=$(grep -c ' PASS$' "$OUT/unpatched.res" || true)
pass_p=$(grep -c ' PASS$' "$OUT/patched.res" || true)
total=$(wc -l < "$OUT/unpatched.res")
echo
echo "zdtm-regress: unpatched $pass_u/$total passed, patched $pass_p/$total passed, $bad regression(s), $(($(date +%s) - start))s"
[ "$bad" -eq 0 ] || die "$bad test run(s) pass with unpatched criu $VERSION and fail with the patch"
