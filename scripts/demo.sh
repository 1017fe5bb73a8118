#!/bin/bash
# Live demonstration of criu --tmp-file (run by "make demo", as root).
#
# A process keeps its state in a temporary directory. It is dumped with
# --tmp-file, the directory is wiped (as a reboot wipes /tmp), and it is
# restored: first without the saved files (what upstream CRIU does), then
# with them, and it carries on from where it was.
set -eu

CRIU=$(realpath "${1:-build/criu-4.1.1/criu/criu}")
DIR=$(mktemp -d /tmp/criu-demo.XXXXXX)
IMG=$(mktemp -d /var/tmp/criu-demo-img.XXXXXX)
PID=

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
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

say "A service with its state in $DIR"
echo "greeting=hello from the config file" > "$DIR/app.conf"
echo 0 > "$DIR/counter"
/usr/bin/python3 - "$DIR" >>"$DIR/app.log" 2>&1 </dev/null <<'PY' &
import os, sys, time
d = sys.argv[1]
os.setsid()
fd = os.open(os.path.join(d, "counter"), os.O_RDWR)
n = int(os.pread(fd, 32, 0))
while True:
    n += 1
    os.pwrite(fd, b"%d\n" % n, 0)
    conf = open(os.path.join(d, "app.conf")).read().strip()
    print("pid %d tick %d (%s)" % (os.getpid(), n, conf), flush=True)
    time.sleep(0.25)
PY
PID=$!
sleep 1.2
run ls -l "$DIR"
run tail -n 3 "$DIR/app.log"

say "Dump it with --tmp-file $DIR"
run "$CRIU" dump -t "$PID" -D "$IMG" -o dump.log --tmp-file "$DIR"
{ wait "$PID"; } 2>/dev/null || true
run ls -l "$IMG"/tmp-files*
run tar -tvf "$IMG/tmp-files.tar.img"
TICK=$(cat "$DIR/counter")
echo "dumped at tick $TICK"

say "Reboot: $DIR is wiped"
run rm -rf "$DIR"
run ls "$DIR" || true

say "Restore without the saved files (what upstream CRIU 4.1.1 does)"
cp -a "$IMG" "$IMG.upstream"
rm "$IMG.upstream"/tmp-files*
if "$CRIU" restore -d -D "$IMG.upstream" -o restore.log; then
	echo "unexpected: restore succeeded without the files" >&2
	exit 1
fi
grep -m1 "Can't open file" "$IMG.upstream/restore.log" | sed 's/^/    /'
echo "restore failed, as upstream issue #65 describes"
wait_gone "$PID"

say "Restore with the saved files"
if ! run "$CRIU" restore -d -D "$IMG" -o restore.log; then
	grep Error "$IMG/restore.log" >&2
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
