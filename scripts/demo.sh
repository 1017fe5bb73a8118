#!/bin/bash
# Live demonstration of criu --tmp-file (run by "make demo", as root).
#
# A process keeps its state in a temporary directory. It is dumped with
# --tmp-file, the directory is wiped (as a reboot wipes /tmp), and it is
# restored: first without the saved files (what upstream CRIU does), then
# with them, and it carries on from where it was.
#
# Usage: scripts/demo.sh [CRIU]   (default: the build of the pinned release,
# build/criu-VERSION/criu/criu, VERSION from scripts/upstream.conf).
# Every criu run has a time limit, CRIU_TIMEOUT seconds (default 120): a
# criu that hangs fails the demo, naming the step and showing its log.
set -eu
TICKER=$(realpath "$(dirname "$0")/ticker.py") # the service the demo dumps

. "$(dirname "$0")/upstream.conf"
CRIU=$(realpath "${1:-build/criu-$VERSION/criu/criu}")
CRIU_TIMEOUT=${CRIU_TIMEOUT:-120}
DIR=$(mktemp -d /tmp/criu-demo.XXXXXX)
IMG=$(mktemp -d /var/tmp/criu-demo-img.XXXXXX)
PID=

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# criu_run STEP LOG ARGS...: "criu ARGS" within CRIU_TIMEOUT seconds; timeout
# kills its whole process group. If the time runs out, the demo fails with
# a message naming STEP and the tail of LOG. Otherwise returns criu's status.
criu_run() {
	local step=$1 log=$2 rc=0 start=$SECONDS
	shift 2
	printf '$ %s %s\n' "$CRIU" "$*"
	timeout -k 5 "$CRIU_TIMEOUT" "$CRIU" "$@" || rc=$?
	if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ $((SECONDS - start)) -ge "$CRIU_TIMEOUT" ]; then
		echo "FAILED: step \"$step\": criu $1 timed out after ${CRIU_TIMEOUT}s (CRIU_TIMEOUT); last lines of $log:" >&2
		if [ -s "$log" ]; then tail -n 20 "$log" | sed 's/^/    /' >&2; else echo "    (no log written)" >&2; fi
		exit 1
	fi
	return "$rc"
}
# The errors of a failed criu run, from its log.
show_errors() { grep -E "Error|Warn" "$1" | sed 's/^/    /' >&2 || tail -n 20 "$1" >&2 || true; }
# A task killed by criu may stay a zombie of PID 1 for a while: its pid
# must be free before it can be restored.
wait_gone() {
	for _ in $(seq 200); do [ -e "/proc/$1" ] || return 0; sleep 0.05; done
	echo "pid $1 did not go away" >&2
	exit 1
}
cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
	rm -rf "$DIR" "$IMG" "$IMG.upstream"
}
trap cleanup EXIT

say "Can criu dump and restore on this machine? (criu check, its warnings included)"
if ! criu_run "criu check" "$IMG/check.log" check -o "$IMG/check.log"; then
	sed 's/^/    /' "$IMG/check.log" >&2
	echo "FAILED: criu check failed: this machine cannot run the demo" >&2
	exit 1
fi
if [ -s "$IMG/check.log" ]; then
	echo "criu check warns (the demo goes on):"
	sed 's/^/    /' "$IMG/check.log"
fi
rm -f "$IMG/check.log"

say "A service with its state in $DIR"
echo "greeting=hello from the config file" > "$DIR/app.conf"
echo 0 > "$DIR/counter"
# Its cwd is /, not the checkout: a restore needs the cwd back too.
(cd / && exec /usr/bin/python3 "$TICKER" "$DIR" >>"$DIR/app.log" 2>&1 </dev/null) &
PID=$!
# Not a job of ours: the shell still reaps it, but says nothing when criu
# dump kills it.
disown "$PID"
sleep 1.2
run ls -l "$DIR"
run tail -n 3 "$DIR/app.log"

say "Dump it with --tmp-file $DIR"
if ! criu_run "dump with --tmp-file" "$IMG/dump.log" dump -t "$PID" -D "$IMG" -o dump.log --tmp-file "$DIR"; then
	show_errors "$IMG/dump.log"
	echo "FAILED: criu dump failed" >&2
	exit 1
fi
wait_gone "$PID"
run ls -l "$IMG"/tmp-files*
run tar -tvf "$IMG/tmp-files.tar.img"
TICK=$(cat "$DIR/counter")
echo "dumped at tick $TICK"

say "Reboot: $DIR is wiped"
run rm -rf "$DIR"
run ls "$DIR" || true

say "Restore without the saved files (what upstream CRIU $VERSION does)"
cp -a "$IMG" "$IMG.upstream"
rm "$IMG.upstream"/tmp-files*
if criu_run "restore without the saved files" "$IMG.upstream/restore.log" \
	restore -d -D "$IMG.upstream" -o restore.log; then
	echo "unexpected: restore succeeded without the files" >&2
	exit 1
fi
grep -m1 "Can't open file" "$IMG.upstream/restore.log" | sed 's/^/    /'
echo "restore failed, as upstream issue #65 describes"
wait_gone "$PID"

say "Restore with the saved files"
if ! criu_run "restore with the saved files" "$IMG/restore.log" restore -d -D "$IMG" -o restore.log; then
	show_errors "$IMG/restore.log"
	echo "FAILED: criu restore failed" >&2
	exit 1
fi
run ls -l "$DIR"
sleep 1.2
run tail -n 8 "$DIR/app.log"
NOW=$(cat "$DIR/counter")
if [ "$NOW" -le "$TICK" ] || ! kill -0 "$PID"; then
	echo "FAILED: the restored process did not carry on" >&2
	exit 1
fi
say "OK: pid $PID carried on from tick $TICK to tick $NOW with its files back"
