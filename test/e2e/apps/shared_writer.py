"""A dumped tree that writes a saved file through a shared mapping behind
the pre-copy's back (issue 20, hole 7).

  shared_writer.py FILE REPORT

The root process starts a thread, and the thread forks the writer (a
child of a thread that is not the main one: found only through
/proc/PID/task/TID/children). The writer makes FILE (64 KiB of "B"),
maps it MAP_SHARED and writes every page through the mapping, so that
the pages are dirty and writable: a later write through the mapping takes
no fault, and no file time changes, whatever the filesystem. It also
makes "pad" (16 MiB) next to FILE, which the pre-copy reads after it,
giving the writer time to act before the freeze. Once both
readers of the pre-copy (the checksum child and tar) have read FILE
(inotify: two IN_CLOSE_NOWRITE), it writes "C" over every page through
the mapping, unmaps it and closes the file, all before the freeze.

REPORT gets "ROOT WRITER" (their pids) once FILE is ready, then
"ROOT WRITER written" once the last write is done and the mapping is
gone.
"""
import ctypes
import mmap
import os
import sys
import threading
import time

IN_CLOSE_NOWRITE = 0x10
SIZE = 64 << 10
path, report = sys.argv[1], sys.argv[2]
root = os.getpid()


def say(text):
    with open(report + ".tmp", "w") as f:
        f.write(text)
    os.rename(report + ".tmp", report)


def writer():
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    os.ftruncate(fd, SIZE)
    m = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[:] = b"B" * SIZE
    # Newer, so read after FILE (the oldest first, by path for the checksum
    # child): time for this process to wake up before the freeze
    with open(os.path.join(os.path.dirname(path), "pad"), "wb") as f:
        f.write(b"P" * (16 << 20))
    libc = ctypes.CDLL(None, use_errno=True)
    ino = libc.inotify_init1(0)
    if ino < 0 or libc.inotify_add_watch(ino, path.encode(), IN_CLOSE_NOWRITE) < 0:
        sys.exit("inotify: %s" % os.strerror(ctypes.get_errno()))
    # The file's times are older than the start of the pre-copy
    time.sleep(0.05)
    say("%d %d\n" % (root, os.getpid()))
    closes = 0
    while closes < 2:
        closes += len(os.read(ino, 4096)) // 16  # events without a name: 16 bytes each
    m[:] = b"C" * SIZE
    m.close()
    os.close(fd)
    os.close(ino)  # not an inotify watch for CRIU to dump
    say("%d %d written\n" % (root, os.getpid()))
    while True:
        time.sleep(60)


def thread():
    if os.fork() == 0:
        try:
            writer()
        finally:
            os._exit(1)
    while True:
        time.sleep(60)


threading.Thread(target=thread, daemon=True).start()
while True:
    time.sleep(60)
