"""Rewrite a file in the clock tick in which the pre-copy reads it, and
then never again: the "racy git" case of --tmp-file-precopy.

  racy.py FILE READY

FILE (4 KiB) is rewritten again and again, same size, its mtime set back
each time, until something reads it (inotify IN_ACCESS: the pre-copy);
then it is rewritten once more, at once, and left alone. Where file
times are jiffies, the pre-copy's lstat(), its read and the last write
are all in one tick: the file keeps the ctime the pre-copy saw, and
only the ctime's age tells that it may have changed after the read.
READY gets the pid once FILE exists.
"""
import ctypes
import os
import sys
import time

IN_ACCESS = 0x1
MTIME = 1_000_000_000 * 1_600_000_000

path, ready = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
n = 0


def rewrite():
    global n
    n += 1
    os.pwrite(fd, b"%016d" % n * 256, 0)
    os.utime(fd, ns=(MTIME, MTIME))


rewrite()
libc = ctypes.CDLL(None, use_errno=True)
ino = libc.inotify_init1(os.O_NONBLOCK)
if ino < 0 or libc.inotify_add_watch(ino, path.encode(), IN_ACCESS) < 0:
    sys.exit("inotify: %s" % os.strerror(ctypes.get_errno()))
with open(ready, "w") as f:
    f.write("%d\n" % os.getpid())
while True:
    rewrite()
    try:
        os.read(ino, 4096)
        break
    except BlockingIOError:
        pass
rewrite()
os.close(ino)  # CRIU can't dump an inotify watch on ramfs
while True:
    time.sleep(60)
