"""A dumped tree that writes a saved file through a shared mapping behind
the pre-copy's back (issue 20, hole 7).

  shared_writer.py FILE REPORT ACK

The root process starts a thread, and the thread forks the writer (a
child of a thread that is not the main one: found only through
/proc/PID/task/TID/children). The writer makes FILE (64 KiB of "B"),
maps it MAP_SHARED and writes every page through the mapping, so that
the pages are dirty and writable: a later write through the mapping takes
no fault, and no file time changes, whatever the filesystem. Once both
readers of the pre-copy (the checksum child and tar) have read FILE
(fanotify: FAN_CLOSE_NOWRITE by two processes), and the test's tar has sent it SIGUSR1
(test_precopy.between_the_passes: the pre-copy's tar is done, and the
dump waits for a line in the fifo ACK before it freezes the tree), it
writes "C" over every page through the mapping, unmaps it, closes the
file, and writes "written" into ACK: in every dump, before the freeze.

REPORT gets "ROOT WRITER" (their pids) once FILE is ready, then
"ROOT WRITER written" once the last write is done and the mapping is
gone.
"""
import ctypes
import mmap
import os
import signal
import struct
import sys
import threading
import time

FAN_CLOEXEC = 0x1
FAN_MARK_ADD = 0x1
FAN_CLOSE_NOWRITE = 0x10
AT_FDCWD = -100
SIZE = 64 << 10
path, report, ack = sys.argv[1], sys.argv[2], sys.argv[3]
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
    # Taken by sigwait() below, whenever it comes
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    # fanotify, not inotify: two closes that come together are one
    # inotify event, and fanotify tells the processes apart
    libc = ctypes.CDLL(None, use_errno=True)
    fan = libc.fanotify_init(FAN_CLOEXEC, os.O_RDONLY)
    if fan < 0 or libc.fanotify_mark(fan, FAN_MARK_ADD, ctypes.c_uint64(FAN_CLOSE_NOWRITE), AT_FDCWD,
                                     path.encode()) < 0:
        sys.exit("fanotify: %s" % os.strerror(ctypes.get_errno()))
    # The file's times are older than the start of the pre-copy
    time.sleep(0.05)
    say("%d %d\n" % (root, os.getpid()))
    readers = set()
    while len(readers) < 2:
        buf = os.read(fan, 4096)
        while buf:
            length, _, _, _, _, event_fd, pid = struct.unpack_from("IBBHQii", buf)
            if event_fd >= 0:
                os.close(event_fd)
            readers.add(pid)
            buf = buf[length:]
    signal.sigwait({signal.SIGUSR1})
    m[:] = b"C" * SIZE
    m.close()
    os.close(fd)
    os.close(fan)  # not a fanotify group for CRIU to dump
    say("%d %d written\n" % (root, os.getpid()))
    with open(ack, "w") as f:
        f.write("written\n")
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
