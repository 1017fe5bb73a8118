"""A process that keeps changing the files in a directory, as fast as it
can, for the --tmp-file-precopy tests: whatever state a dump freezes it
in must come back, byte for byte.

  churn.py DIR READY [ACK]

In DIR, besides "static" (8 MiB, never changed):
  same     rewritten in place, same size, its mtime set back each time
  mapped   written through a MAP_SHARED mapping only
  flip     a directory with files, then nothing, then a file, then a symlink
  a, b     a file, and b a hard link to it half of the time
  new.N    files made and removed, a few at a time
  old.N    64 KiB files, one of them rewritten now and then
READY is written once everything exists.

With ACK (a fifo): on SIGUSR1, it makes one more step, then writes a line
into ACK (the number of that step). The test's tar sends it when the
pre-copy's tar is done, and waits for the line before the dump goes on to
freeze the tree: the tree changes between the passes in every dump.
"""
import mmap
import os
import signal
import sys

d, ready = sys.argv[1], sys.argv[2]
ack = sys.argv[3] if len(sys.argv) > 3 else None
asked = False


def on_usr1(sig, frame):
    global asked
    asked = True


signal.signal(signal.SIGUSR1, on_usr1)
os.chdir(d)

with open("static", "wb") as f:
    f.write(os.urandom(8 << 20))
with open("same", "wb") as f:
    f.write(b"0" * 4096)
with open("mapped", "wb") as f:
    f.write(b"\0" * 4096)
with open("a", "wb") as f:
    f.write(b"a\n")
for i in range(20):
    with open("old.%d" % i, "wb") as f:
        f.write(os.urandom(64 << 10))
same = os.open("same", os.O_WRONLY)
fd = os.open("mapped", os.O_RDWR)
mapped = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
os.close(fd)
MTIME = 1_000_000_000 * 1_600_000_000


def flip(k):
    if os.path.isdir("flip") and not os.path.islink("flip"):
        for name in os.listdir("flip"):
            os.unlink("flip/" + name)
        os.rmdir("flip")
    elif os.path.lexists("flip"):
        os.unlink("flip")
    if k % 4 == 0:
        os.mkdir("flip")
        for i in range(3):
            with open("flip/%d" % i, "w") as f:
                f.write("%d %d\n" % (k, i))
    elif k % 4 == 2:
        with open("flip", "w") as f:
            f.write("file %d\n" % k)
    elif k % 4 == 3:
        os.symlink("static", "flip")


def step(n):
    os.pwrite(same, b"%016d" % n * 256, 0)
    os.utime("same", ns=(MTIME, MTIME))
    mapped[0:16] = b"%016d" % n
    if n % 7 == 0:
        flip(n // 7)
    if n % 5 == 0:
        if os.path.exists("b"):
            os.unlink("b")
        else:
            os.link("a", "b")
    if n % 50 == 0:
        with open("old.%d" % (n // 50 % 20), "r+b") as f:
            f.write(b"%016d" % n)
    if n % 3 == 0:
        with open("new.%d" % n, "w") as f:
            f.write("%d\n" % n)
        if os.path.exists("new.%d" % (n - 15)):
            os.unlink("new.%d" % (n - 15))


n = 0
step(n)
with open(ready, "w") as f:
    f.write("%d\n" % os.getpid())
while True:
    n += 1
    was_asked = asked
    step(n)
    if was_asked and ack:
        asked = False
        with open(ack, "w") as f:
            f.write("%d\n" % n)
