#!/usr/bin/python3
"""What a local unprivileged user does to a root restore in /tmp.

attacker.py COUNTS swap DIR: in DIR (the user's own), keep exchanging
DIR/app (a directory) and DIR/link (a symlink to the victim) with
renameat2(RENAME_EXCHANGE), as fast as it can.

attacker.py COUNTS squat PATH VICTIM: keep trying to be first at PATH, in
the sticky /tmp: a symlink to VICTIM, then a directory of its own, over
and over. On SIGUSR1 (SIGUSR2) it holds the next symlink (directory) it
makes there and stops itself (SIGSTOP) while holding it; SIGCONT lets it
go on.

COUNTS is the number of an inherited fd, 64 bytes of memory shared with
the test (a memfd): the attacker keeps in it, as it goes, the number of attempts, of successes (exchanges made, names
won) and of failures, so that the test can tell what happened while a
restore ran. Every failed call is counted by errno; an errno that the
attack cannot meet (a bug of the attack, not a defence of criu) is
printed with the call and the attacker exits 3. On SIGTERM it prints
its counts by call and errno as one JSON line and exits 0.
Prints "ready" once it runs.
"""
import ctypes
import errno
import json
import mmap
import os
import signal
import sys

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_EXCHANGE = 2

# The errnos each attack meets because of what root does at the same time
EXPECTED = {
    # The user's own directory: nothing else touches it
    "swap": set(),
    # root restores or removes the name between our calls; a name of
    # root's in the sticky /tmp cannot be removed by us
    "squat": {errno.EEXIST, errno.ENOENT, errno.EPERM, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR},
}

counts_fd, mode = int(sys.argv[1]), sys.argv[2]
shm = mmap.mmap(counts_fd, 64, mmap.MAP_SHARED)
os.close(counts_fd)
attempts = wins = failures = 0
failed = {}  # "call errno-name": count
stop = False
hold = None  # "symlink" or "mkdir": the next one of these that wins is held


# Three aligned 64-bit counters: each store is one, never seen torn
shared = (ctypes.c_uint64 * 3).from_buffer(shm)


def publish():
    shared[0], shared[1], shared[2] = attempts, wins, failures


def failure(call, err):
    global failures
    failures += 1
    key = "%s %s" % (call, errno.errorcode.get(err, str(err)))
    failed[key] = failed.get(key, 0) + 1
    if err not in EXPECTED[mode]:
        print("attacker: unexpected failure: %s: %s" % (call, os.strerror(err)), file=sys.stderr, flush=True)
        report()
        sys.exit(3)


def report():
    print(json.dumps({"attempts": attempts, "wins": wins, "failures": failures, "failed": failed}), flush=True)


def on_term(sig, frame):
    global stop
    stop = True


def on_hold(sig, frame):
    global hold
    hold = "symlink" if sig == signal.SIGUSR1 else "mkdir"


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGUSR1, on_hold)
signal.signal(signal.SIGUSR2, on_hold)
publish()
print("ready", flush=True)

if mode == "swap":
    d = sys.argv[3].encode()
    os.chdir("/")
    a, b = d + b"/app", d + b"/link"
    while not stop:
        attempts += 1
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
            wins += 1
        else:
            failure("renameat2", ctypes.get_errno())
        publish()
else:
    path, victim = sys.argv[3], sys.argv[4]
    kinds = ((lambda: os.symlink(victim, path), os.unlink, "symlink"),
             (lambda: os.mkdir(path, 0o777), os.rmdir, "mkdir"))
    while not stop:
        for make, undo, call in kinds:
            attempts += 1
            try:
                make()
            except OSError as e:
                failure(call, e.errno)
                publish()
                continue
            wins += 1
            publish()
            if hold == call:
                # Held: the test restores while the name is ours
                hold = None
                os.kill(os.getpid(), signal.SIGSTOP)
            try:
                undo(path)
            except OSError as e:
                failure(undo.__name__, e.errno)
            publish()
report()
