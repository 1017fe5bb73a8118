"""Rewrite a file in the clock tick in which the pre-copy reads it, and
then never again: the "racy git" case of --tmp-file-precopy; and arm the
ctime rule in every dump.

  racy.py DIR READY

DIR/file (4 KiB) is rewritten again and again, same size, its mtime set
back each time, until something reads it (inotify IN_ACCESS: the
pre-copy); then it is rewritten once more, at once, and left alone. Where
file times are jiffies, the pre-copy's lstat(), its read and the last
write are all in one tick: the file keeps the ctime the pre-copy saw, and
only the ctime's age tells that it may have changed after the read.

DIR/big holds many empty files and a directory z with a file "armed". The
moment the pre-copy walk opens big (inotify IN_OPEN), armed is rewritten
(same size, mtime set back): after the pre-copy started, before the walk,
busy with the files of big, gets to z. The walk sees a ctime that is not
older than the start of the pre-copy, and nothing changes armed after:
only the ctime rule archives it again, in every dump. READY gets the pid
once everything exists, then "armed on time" once armed was rewritten
before the walk opened z, or "armed late" if the walk was there first.
"""
import ctypes
import os
import struct
import sys
import time

IN_ACCESS = 0x1
IN_OPEN = 0x20
IN_ISDIR = 0x40000000
MTIME = 1_000_000_000 * 1_600_000_000
BIG = 1000

d, ready = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(d, "big", "z"))
for i in range(BIG):
    open(os.path.join(d, "big", str(i)), "w").close()
armed = os.open(os.path.join(d, "big", "z", "armed"), os.O_WRONLY | os.O_CREAT, 0o644)
os.pwrite(armed, b"before the pre-copy\n", 0)
os.utime(armed, ns=(MTIME, MTIME))
fd = os.open(os.path.join(d, "file"), os.O_WRONLY | os.O_CREAT, 0o644)
n = 0


def rewrite():
    global n
    n += 1
    os.pwrite(fd, b"%016d" % n * 256, 0)
    os.utime(fd, ns=(MTIME, MTIME))


rewrite()
libc = ctypes.CDLL(None, use_errno=True)
ino = libc.inotify_init1(os.O_NONBLOCK)
wd_file = libc.inotify_add_watch(ino, os.path.join(d, "file").encode(), IN_ACCESS)
wd_big = libc.inotify_add_watch(ino, os.path.join(d, "big").encode(), IN_OPEN)
wd_z = libc.inotify_add_watch(ino, os.path.join(d, "big", "z").encode(), IN_OPEN)
if ino < 0 or min(wd_file, wd_big, wd_z) < 0:
    sys.exit("inotify: %s" % os.strerror(ctypes.get_errno()))
with open(ready, "w") as f:
    f.write("%d\n" % os.getpid())


def events():
    """(watch, mask, name) of the events queued now"""
    try:
        buf = os.read(ino, 65536)
    except BlockingIOError:
        return []
    out, i = [], 0
    while i < len(buf):
        wd, mask, _, length = struct.unpack_from("iIII", buf, i)
        out.append((wd, mask, buf[i + 16:i + 16 + length].rstrip(b"\0")))
        i += 16 + length
    return out


# The walk is not the only one to open big: criu looks through the saved
# directories for its images directory before the pre-copy starts. So
# armed is rewritten at every opening of big, until the pre-copy's readers
# open the files of big (the walk only lists them): the last rewrite is
# the one at the walk's opening, after the pre-copy started. It is on
# time if the walk had not opened z yet when it was done.
read = stopped = False
late = None
while not read:
    rewrite()
    queued = events()
    while queued:
        wd, mask, name = queued.pop(0)
        if wd == wd_big and not name and not stopped:
            os.pwrite(armed, b"at the pre-copy!\n\0\0\0", 0)
            os.utime(armed, ns=(MTIME, MTIME))
            queued += events()
            late = any(w == wd_z and not nm for w, _, nm in queued)
        elif wd == wd_big and name and not mask & IN_ISDIR and not stopped:
            stopped = True
            with open(ready, "a") as f:
                f.write({None: "never armed\n", True: "armed late\n", False: "armed on time\n"}[late])
        elif wd == wd_file:
            read = True
rewrite()
os.close(ino)  # CRIU can't dump an inotify watch on ramfs
while True:
    time.sleep(60)
