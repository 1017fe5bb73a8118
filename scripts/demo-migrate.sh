#!/bin/bash
# Live migration between two "hosts" on one machine, with --tmp-file
# (run by "make demo-migrate", as root).
#
# Host A is this machine as it is. Host B is a mount and pid namespace made
# here, with its own empty tmpfs on /tmp (where its images go too): it
# never had the process's files. They talk over 127.0.0.1 only.
#
# Act 1, A -> B: criu page-server runs in B; criu dump on A sends the memory
# pages to it and writes the other images (the --tmp-file archive among
# them) on A; they are copied to B; criu restore in B. The process carries
# on in B with the files that only A had.
# Act 2, B -> A, lazily: criu dump --lazy-pages in B keeps the pages and
# serves them; the other images are copied to A, whose copy of the files
# is wiped; criu lazy-pages and criu restore --lazy-pages on A. Memory is
# fetched on demand through userfaultfd; the files come from the archive.
#
# Usage: scripts/demo-migrate.sh [CRIU]   (default: build/criu-VERSION/criu/criu)
# Every criu run is under timeout(1), CRIU_TIMEOUT seconds (default 120):
# a criu that fails or hangs stops the demo with the name of the step and
# the tail of its log.
set -eu
. "$(dirname "$0")/upstream.conf"
CRIU_TIMEOUT=${CRIU_TIMEOUT:-120}
WORK=$(mktemp -d /var/tmp/criu-migrate.XXXXXX)   # host A's images and logs
# B has a /tmp of its own, and the checkout may be under A's /tmp: what
# both hosts run (on two real hosts, installed on each), criu and the
# service, is copied to a directory outside /tmp that B sees too.
mkdir "$WORK/bin"
cp "${1:-build/criu-$VERSION/criu/criu}" "$(dirname "$0")/ticker.py" "$WORK/bin/" || { rm -rf "$WORK"; exit 1; }
CRIU=$WORK/bin/criu
TICKER=$WORK/bin/ticker.py # the service the demo dumps
DIR=$(mktemp -d /tmp/criu-migrate-app.XXXXXX)    # the process's files, on A's /tmp
PID= NSPID= HB= OLD_PIPE_MAX= BG=

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
log_tail() { if [ -s "$1" ]; then tail -n 20 "$1" | sed 's/^/    /' >&2; else echo "    (no log at $1)" >&2; fi; }
# check STEP LOG RC START: the verdict on one criu run.
check() {
	local step=$1 log=$2 rc=$3 start=$4
	if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ $((SECONDS - start)) -ge "$CRIU_TIMEOUT" ]; then
		echo "FAILED: step \"$step\" timed out after ${CRIU_TIMEOUT}s (CRIU_TIMEOUT); last lines of $log:" >&2
		log_tail "$log"
		exit 1
	fi
	if [ "$rc" != 0 ]; then
		echo "FAILED: step \"$step\" exited $rc; last lines of $log:" >&2
		log_tail "$log"
		exit 1
	fi
}
# step STEP LOG CMD...: CMD (a criu, maybe through nsenter) within CRIU_TIMEOUT.
step() {
	local name=$1 log=$2 rc=0 start=$SECONDS
	shift 2
	printf '$ %s\n' "$*"
	timeout -k 5 "$CRIU_TIMEOUT" "$@" || rc=$?
	check "$name" "$log" "$rc" "$start"
}
# bg_step STEP LOG CMD...: the same in the background (a server); bg_wait
# collects it.
bg_step() {
	BG_NAME=$1 BG_LOG=$2 BG_START=$SECONDS
	shift 2
	printf '$ %s &\n' "$*"
	timeout -k 5 "$CRIU_TIMEOUT" "$@" &
	BG=$!
}
bg_wait() {
	local rc=0
	wait "$BG" || rc=$?
	BG=
	check "$BG_NAME" "$BG_LOG" "$rc" "$BG_START"
}
# A server is ready when it listens on 127.0.0.1:PORT.
wait_listen() {
	for _ in $(seq 200); do
		ss -Hltn "sport = :$1" | grep -q "127.0.0.1:$1" && return 0
		[ -z "$BG" ] || kill -0 "$BG" 2>/dev/null || break
		sleep 0.05
	done
	bg_wait
	fail "step \"$BG_NAME\": nothing listens on 127.0.0.1:$1"
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_gone() {
	for _ in $(seq 200); do [ -e "/proc/$1" ] || return 0; sleep 0.05; done
	fail "pid $1 did not go away"
}
# Run a command on host B: in its mount and pid namespaces.
inB() { nsenter -t "$HB" -m -p -- "$@"; }
cleanup() {
	[ -z "$BG" ] || kill -9 "$BG" 2>/dev/null || true
	[ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true
	# B's init: its pid namespace, the tasks in it and its tmpfs go with it.
	[ -z "$HB" ] || kill -9 "$HB" 2>/dev/null || true
	[ -z "$OLD_PIPE_MAX" ] || echo "$OLD_PIPE_MAX" >/proc/sys/fs/pipe-max-size
	rm -rf "$DIR" "$WORK"
}
trap cleanup EXIT

say "Host A: a service with its state in $DIR (A's /tmp)"
echo "greeting=hello from host A's config file" >"$DIR/app.conf"
echo 0 >"$DIR/counter"
# Its cwd is /, which B has too (not the checkout, maybe on A's /tmp).
(cd / && exec /usr/bin/python3 "$TICKER" "$DIR" 16 >>"$DIR/app.log" 2>&1 </dev/null) &
PID=$!
disown "$PID"
sleep 1.2
run tail -n 2 "$DIR/app.log"

say "Host B: its own mount and pid namespace, an empty tmpfs on /tmp"
unshare --mount --pid --fork --mount-proc --propagation private \
	sh -c 'mount -t tmpfs hostB-tmp /tmp && mkdir /tmp/images && exec sleep infinity' </dev/null 2>"$WORK/hostB.err" &
UNSHARE=$!
# B is up when its /tmp is its tmpfs, not A's /tmp (which may well have an
# "images" directory of its own), and has the images directory.
b_up() {
	[ -n "$HB" ] && [ "$(stat -c %d "/proc/$HB/root/tmp" 2>/dev/null)" != "$(stat -c %d /tmp)" ] &&
		[ -d "/proc/$HB/root/tmp/images" ]
}
for _ in $(seq 100); do
	HB=$(cat "/proc/$UNSHARE/task/$UNSHARE/children" 2>/dev/null | tr -d ' ')
	b_up && break
	sleep 0.05
done
b_up || { cat "$WORK/hostB.err" >&2; fail "host B did not come up"; }
echo "host B is pid $HB; commands run there with: nsenter -t $HB -m -p -- COMMAND"
run inB ls -A /tmp
inB test ! -e "$DIR" && echo "B has no $DIR"
echo "B shares A's files but /tmp: both run criu and the service from copies in $WORK/bin"

say "Act 1, A -> B: criu page-server in B receives the memory pages"
PORT=$(free_port)
bg_step "page server in B" "/proc/$HB/root/tmp/images/page-server.log" \
	nsenter -t "$HB" -m -p -- "$CRIU" page-server -D /tmp/images -o page-server.log \
	--address 127.0.0.1 --port "$PORT"
wait_listen "$PORT"
mkdir "$WORK/img"
step "dump on A to B's page server" "$WORK/img/dump.log" \
	"$CRIU" dump -t "$PID" -D "$WORK/img" -o dump.log --tmp-file "$DIR" \
	--page-server --address 127.0.0.1 --port "$PORT"
bg_wait
wait_gone "$PID"
TICK=$(cat "$DIR/counter")
echo "dumped at tick $TICK; the pages are in B only:"
run ls "$WORK/img"
run inB ls /tmp/images

say "Copy the other images to B (scp on two real hosts)"
run cp -a "$WORK/img/." "/proc/$HB/root/tmp/images/"

say "Restore in B"
step "restore in B" "/proc/$HB/root/tmp/images/restore.log" \
	nsenter -t "$HB" -m -p -- "$CRIU" restore -d -D /tmp/images -o restore.log
NSPID=$PID PID=
sleep 1.2
run inB ls -l "$DIR"
run inB tail -n 3 "$DIR/app.log"
NOW=$(inB cat "$DIR/counter")
[ "$NOW" -gt "$TICK" ] || fail "the process does not carry on in B (tick $NOW, dumped at $TICK)"
[ "$(cat "$DIR/counter")" = "$TICK" ] || fail "A's copy of the files changed"
echo "OK: in B the process went on from tick $TICK to $NOW with the files only A had; A's counter stays at $TICK"

say "Act 2, B -> A, lazily: the pages stay in B until the restored process touches them"
MAX=$(cat /proc/sys/fs/pipe-max-size)
if [ "$MAX" -lt 4194304 ]; then
	# criu's lazy page server asks for a 4 MiB pipe (pipe_read_dest_init,
	# F_SETPIPE_SZ, result unchecked): above fs.pipe-max-size that needs
	# CAP_SYS_RESOURCE, which these machines lack, and the first request
	# over 64 KiB then fails with "tee: 65536: Operation not permitted".
	echo "fs.pipe-max-size is $MAX: raised to 4 MiB for the demo (criu's lazy page server needs it without CAP_SYS_RESOURCE)"
	OLD_PIPE_MAX=$MAX
	echo 4194304 >/proc/sys/fs/pipe-max-size
fi
PORT=$(free_port)
inB mkdir /tmp/img-lazy
bg_step "lazy dump in B" "/proc/$HB/root/tmp/img-lazy/dump.log" \
	nsenter -t "$HB" -m -p -- "$CRIU" dump -t "$NSPID" -D /tmp/img-lazy -o dump.log --tmp-file "$DIR" \
	--lazy-pages --address 127.0.0.1 --port "$PORT"
wait_listen "$PORT"
DUMP_BG=$BG DUMP_NAME=$BG_NAME DUMP_LOG=$BG_LOG DUMP_START=$BG_START
TICK=$(inB cat "$DIR/counter")
echo "dumped in B at tick $TICK; B serves the pages on 127.0.0.1:$PORT"
run cp -a "/proc/$HB/root/tmp/img-lazy" "$WORK/img-lazy"
run rm -rf "$DIR"
echo "(A's copy of the files is wiped: they can only come from the images)"
bg_step "lazy-pages daemon on A" "$WORK/img-lazy/lazy-pages.log" \
	"$CRIU" lazy-pages -D "$WORK/img-lazy" -o lazy-pages.log --page-server --address 127.0.0.1 --port "$PORT"
# restore connects to the daemon's socket in the images (work) directory
for _ in $(seq 200); do
	[ -S "$WORK/img-lazy/lazy-pages.socket" ] && break
	kill -0 "$BG" 2>/dev/null || bg_wait
	sleep 0.05
done
step "lazy restore on A" "$WORK/img-lazy/restore.log" \
	"$CRIU" restore -d --lazy-pages -D "$WORK/img-lazy" -o restore.log
PID=$NSPID
bg_wait
BG=$DUMP_BG BG_NAME=$DUMP_NAME BG_LOG=$DUMP_LOG BG_START=$DUMP_START
bg_wait
sleep 1.2
run tail -n 3 "$DIR/app.log"
NOW=$(cat "$DIR/counter")
[ "$NOW" -gt "$TICK" ] && kill -0 "$PID" || fail "the process does not carry on in A (tick $NOW, dumped at $TICK)"
say "OK: pid $PID went A -> B -> A, from tick 1 to tick $NOW, its files carried in the images both ways"
