#!/bin/sh
# Upstream regression guard: run a fixed list of upstream zdtm tests
# (scripts/zdtm-regress.list) with the patched criu and with an unpatched
# criu built from the same pinned tarball, print both side by side, and
# fail if any test passes unpatched and fails patched (a regression), or
# if a listed run does not pass unpatched (a dead test: the list says it
# passes here, and a test that fails both ways would hide a regression).
#
# A run that passes with the patched criu cannot be a regression, so by
# default the unpatched criu is built and run only for the runs that did
# not pass patched (its column shows "-" for the others), and SAMPLE of
# those that did (a different slice of the list each day, so that a CI
# that runs daily goes through the whole list): any of these that does
# not pass unpatched is dead. FULL=1 runs every test with both, as after
# a change of the pinned version, to check that the whole list still
# passes unpatched.
#
# Usage: scripts/zdtm-regress.sh [PATCHED_TREE]   (default build/criu-$VERSION)
#   PRISTINE=dir   where the unpatched tree is built
#                  (default build/criu-$VERSION-pristine)
#   LIST=file      the test list (default scripts/zdtm-regress.list)
#   FULL=1         run the whole list with the unpatched criu too
#   SAMPLE=n       also run n of the runs that passed patched with the
#                  unpatched criu (default 0; the slice moves every day)
#   JOBS=n         make -j
#   TEST_TIMEOUT=n time limit of one zdtm.py run, in seconds (default 300);
#                  a run that reaches it is reported as TIMEOUT (test and
#                  flavor named), not as a bare FAIL
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
FULL=${FULL:-0}
SAMPLE=${SAMPLE:-0}
JOBS=${JOBS:-$(nproc)}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
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

# Only zdtm's library and the given tests (zdtm/static/<test>...): building
# all of zdtm is slow
build_tests() {
	tree=$1
	shift
	make -s -C "$tree/test/zdtm/lib" -j"$JOBS" >/dev/null
	make -s -C "$tree/test/zdtm/static" -j"$JOBS" $(printf '%s\n' "$@" | sed 's|^zdtm/static/||' | sort -u) >/dev/null
}

# run_all TREE LABEL < "<test> <flavor>" lines: one zdtm.py per test and
# flavor, so that every run has its own exit status and log; results in
# $OUT/LABEL.res
run_all() {
	tree=$1 label=$2
	mkdir -p "$OUT/$label"
	: > "$OUT/$label.res"
	while read -r t f; do
		log="$OUT/$label/$(echo "$t" | tr / _).$f.log"
		# timeout(1) sends SIGTERM to the process group, SIGKILL 10 s
		# later: it exits 124, or 137 if SIGKILL was needed
		rc=0
		(cd "$tree/test" && timeout -k 10 "$TEST_TIMEOUT" $PYTHON zdtm.py run -t "$t" -f "$f" -k failed) \
			> "$log" 2>&1 < /dev/null || rc=$?
		case $rc in
		0) r=PASS ;;
		124|137)
			r=TIMEOUT
			echo "zdtm-regress: TIMEOUT: $t in $f ($label) did not finish within ${TEST_TIMEOUT}s, killed" |
				tee -a "$log" >&2 ;;
		*) r=FAIL ;;
		esac
		# the test's .desc does not allow this flavor, or a feature is missing
		[ "$r" = TIMEOUT ] || ! grep -q "^Skipping $t (" "$log" || r=SKIP
		echo "$t $f $r" >> "$OUT/$label.res"
		printf '  %-8s %-40s %-4s %s\n' "$label" "$t" "$f" "$r"
	done
}

mkdir -p "$OUT"
rm -f "$OUT/patched.res" "$OUT/unpatched.res"
rm -rf "$OUT/patched" "$OUT/unpatched"
build_tests "$PATCHED" $(tests)

start=$(date +%s)
total=$(runs | wc -l)
echo "zdtm-regress: $total runs of $(tests | wc -l) upstream tests, patched criu"
runs | run_all "$PATCHED" patched

# The runs to repeat with the unpatched criu
if [ "$FULL" = 1 ]; then
	runs > "$OUT/unpatched.todo"
else
	awk '$3 != "PASS" { print $1, $2 }' "$OUT/patched.res" > "$OUT/unpatched.todo"
	# SAMPLE of the others, from a slice that moves on every day
	awk -v n="$SAMPLE" -v day="$(date +%j)" '$3 == "PASS" { run[c++] = $1 " " $2 }
		END { if (n > c) n = c; for (i = 0; i < n; i++) print run[(day * n + i) % c] }' \
		"$OUT/patched.res" >> "$OUT/unpatched.todo"
fi
: > "$OUT/unpatched.res"
if [ -s "$OUT/unpatched.todo" ]; then
	build_pristine
	build_tests "$PRISTINE" $(awk '{ print $1 }' "$OUT/unpatched.todo")
	echo "zdtm-regress: $(wc -l < "$OUT/unpatched.todo") runs with the unpatched criu $VERSION"
	run_all "$PRISTINE" unpatched < "$OUT/unpatched.todo"
else
	echo "zdtm-regress: every run passed patched: the unpatched criu is not needed (FULL=1 runs it anyway)"
fi

echo
printf '%-40s %-4s %-9s %-9s\n' TEST FLAVOR UNPATCHED PATCHED
bad=0
dead=0
while read -r t f p; do
	u=$(awk -v t="$t" -v f="$f" '$1 == t && $2 == f { print $3 }' "$OUT/unpatched.res")
	mark=
	if [ "$u" = PASS ] && [ "$p" != PASS ]; then
		mark="  <-- REGRESSION (log: $OUT/patched/$(echo "$t" | tr / _).$f.log)"
		bad=$((bad + 1))
	elif [ -n "$u" ] && [ "$u" != PASS ]; then
		mark="  <-- DEAD: listed, but does not pass unpatched (log: $OUT/unpatched/$(echo "$t" | tr / _).$f.log)"
		dead=$((dead + 1))
	fi
	printf '%-40s %-4s %-9s %-9s%s\n' "$t" "$f" "${u:--}" "$p" "$mark"
done < "$OUT/patched.res"

echo
for label in patched unpatched; do
	awk -v l="$label" -v s="$TEST_TIMEOUT" '$3 == "TIMEOUT" { print "zdtm-regress: TIMEOUT (" l "): " $1 " in " $2 " did not finish within " s "s" }' "$OUT/$label.res"
done
pass_p=$(grep -c ' PASS$' "$OUT/patched.res" || true)
timeouts=$(cat "$OUT/patched.res" "$OUT/unpatched.res" | grep -c ' TIMEOUT$' || true)
if [ "$FULL" = 1 ]; then
	pass_u="$(grep -c ' PASS$' "$OUT/unpatched.res" || true)/$total passed"
else
	pass_u="$(grep -c ' PASS$' "$OUT/unpatched.res" || true)/$(wc -l < "$OUT/unpatched.res") passed of those run (FULL=1: all)"
fi
echo "zdtm-regress: patched $pass_p/$total passed, unpatched $pass_u, $bad regression(s), $dead dead, $timeouts timeout(s), $(($(date +%s) - start))s"
[ "$bad" -eq 0 ] || die "$bad test run(s) pass with unpatched criu $VERSION and fail with the patch"
[ "$dead" -eq 0 ] || die "$dead listed test run(s) do not pass with unpatched criu $VERSION either: they test nothing here; fix them or move them to the left-out list with the reason"
