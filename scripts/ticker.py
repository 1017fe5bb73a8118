#!/usr/bin/python3
"""A service with its state in a directory, for the demos and the migration tests.

ticker.py DIR [MEMORY_MIB] [PERIOD]: keeps DIR/counter open read-write and
counts on from the number in it, rereads DIR/app.conf by path, and writes
one line a tick to its stdout (DIR/app.log in the callers):
"tick N CONF (pid P, M MiB of memory)". MEMORY_MIB of memory (default 0)
is read on every tick, pages for a migration to carry. PERIOD is in
seconds (default 0.25).
"""
import os
import sys
import time

d = sys.argv[1]
mib = int(sys.argv[2]) if len(sys.argv) > 2 else 0
period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
try:
    os.setsid()  # out of the caller's session and process group
except OSError:
    pass  # started as a session leader already
ballast = bytearray(os.urandom(1 << 20)) * mib
fd = os.open(os.path.join(d, "counter"), os.O_RDWR)
n = int(os.pread(fd, 32, 0))
while True:
    n += 1
    os.pwrite(fd, b"%d\n" % n, 0)
    conf = open(os.path.join(d, "app.conf")).read().strip()
    sum(ballast[::1 << 16])  # read the pages on every tick
    print("tick %d %s (pid %d, %d MiB of memory)" % (n, conf, os.getpid(), len(ballast) >> 20), flush=True)
    time.sleep(period)
