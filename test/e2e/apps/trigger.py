"""Change a directory tree the moment the pre-copy starts reading it, and
then not again: every change falls between the two passes of
--tmp-file-precopy.

  trigger.py DIR READY [ACK]

DIR gets 0trigger (the first file the pre-copy reads: the names sort
first), a tree a/b/c, d, a directory e of mode 0500, a 1 MiB file, hard
links and a symlink. When inotify says 0trigger was read: a/b/c/deep.txt
grows, a/new.txt appears, d/old.txt goes, e/f.txt changes mode, the hard
link pair gets a third name, and 0trigger itself is rewritten. READY gets
the pid once DIR is made, and "changed" once the changes are done; so
does the fifo ACK, if given (the test's tar waits for it before the dump
goes on to the freeze).
"""
import ctypes
import os
import sys
import time

IN_ACCESS = 0x1
d, ready = sys.argv[1], sys.argv[2]
os.chdir(d)
os.makedirs("a/b/c")
os.mkdir("d")
os.mkdir("e")
for name, data in (("0trigger", b"read me first\n"), ("a/b/c/deep.txt", b"deep\n"),
                   ("a/b/keep.bin", os.urandom(1 << 20)), ("d/old.txt", b"old\n"),
                   ("e/f.txt", b"f\n"), ("hl1", b"linked\n")):
    with open(name, "wb") as f:
        f.write(data)
os.link("hl1", "a/hl2")
os.symlink("a/b", "sym")
os.chmod("e", 0o500)
libc = ctypes.CDLL(None, use_errno=True)
ino = libc.inotify_init1(0)
if ino < 0 or libc.inotify_add_watch(ino, b"0trigger", IN_ACCESS) < 0:
    sys.exit("inotify: %s" % os.strerror(ctypes.get_errno()))
with open(ready, "w") as f:
    f.write("%d\n" % os.getpid())
os.read(ino, 4096)
os.close(ino)  # not an inotify watch for CRIU to dump
with open("a/b/c/deep.txt", "ab") as f:
    f.write(b"grown\n")
with open("a/new.txt", "w") as f:
    f.write("new\n")
os.unlink("d/old.txt")
os.chmod("e/f.txt", 0o600)
os.link("hl1", "d/hl3")
with open("0trigger", "wb") as f:
    f.write(b"was read\n")
with open(ready, "a") as f:
    f.write("changed\n")
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as f:  # ACK, a fifo: the dump waits for it
        f.write("changed\n")
while True:
    time.sleep(60)
