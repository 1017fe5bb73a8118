"""Changes a directory once, between the two passes of --tmp-file-precopy
(test_precopy_watch.py).

  window.py DIR READY ACK MODE [FLOOD]

DIR gets 300 files of 4 KiB (kept.N), "data" (64 KiB), "fifo", "link"
and "mapped" (regular files for now); READY gets the pid. On SIGUSR1 (the
test's tar sends it once the pre-copy's tar is done) it makes MODE's
changes, then writes "done" into the fifo ACK, and waits to be killed:

  swap    data rewritten with other bytes, same size, its mtime set
          back; fifo becomes a fifo, link a symlink to /etc/shadow;
          new.txt made, kept.0 removed
  mapped  mapped written through a MAP_SHARED mapping made now, the file
          closed and unmapped before the freeze: on tmpfs no time of it
          changes
  flood   FLOOD empty files made in DIR/../flood (the same filesystem,
          not saved: two events each, a create and a close_write), then
          data rewritten as in swap, after the queue is full
  redir   sub (with sub/f) removed and made again, empty, with the same
          inode number
  reroot  DIR itself emptied, removed and made again with the same inode
          number, with new.txt in it (not the first saved path on its
          filesystem: the record holds that one open)
For redir and reroot, ACK gets "no reuse" instead if the filesystem did
not give the number back.
"""
import mmap
import os
import signal
import sys
import time

d, ready, ack, mode = sys.argv[1:5]
flood = int(sys.argv[5]) if len(sys.argv) > 5 else 0
asked = False


def on_usr1(sig, frame):
    global asked
    asked = True


signal.signal(signal.SIGUSR1, on_usr1)
os.chdir(d)
for i in range(300):
    with open("kept.%d" % i, "wb") as f:
        f.write(os.urandom(4096))
for name in ("data", "fifo", "link", "mapped"):
    with open(name, "wb") as f:
        f.write(b"old\n" * (16384 if name == "data" else 1024))
with open(ready, "w") as f:
    f.write("%d\n" % os.getpid())

while not asked:
    time.sleep(0.01)


def rewrite_data():
    st = os.stat("data")
    with open("data", "r+b") as f:
        f.write(b"NEW\n" * 16384)
    os.utime("data", ns=(st.st_atime_ns, st.st_mtime_ns))


if mode == "swap":
    rewrite_data()
    os.unlink("fifo")
    os.mkfifo("fifo")
    os.unlink("link")
    os.symlink("/etc/shadow", "link")
    with open("new.txt", "w") as f:
        f.write("new\n")
    os.unlink("kept.0")
elif mode == "mapped":
    fd = os.open("mapped", os.O_RDWR)
    m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    m[:4] = b"MAP\n"
    m.close()
elif mode == "flood":
    os.mkdir("../flood")
    for i in range(flood):
        os.close(os.open("../flood/%d" % i, os.O_CREAT | os.O_WRONLY, 0o600))
    rewrite_data()
elif mode in ("redir", "reroot"):
    # The inodes freed by the removal are given out again lowest first
    # (ext4): directories made until the old number comes back
    path = os.path.abspath("sub" if mode == "redir" else ".")
    os.chdir("..")
    old = os.lstat(path).st_ino
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)
    done = "no reuse"
    for i in range(1000):
        if i:
            os.rename(path, os.path.join(os.path.dirname(os.path.abspath(d)), ".spare.%d" % i))
        os.mkdir(path)
        if os.lstat(path).st_ino == old:
            done = "done"
            break
    if mode == "reroot":
        with open(os.path.join(path, "new.txt"), "w") as f:
            f.write("new\n")
with open(ack, "w") as f:
    f.write("%s\n" % (done if mode in ("redir", "reroot") else "done"))
while True:
    time.sleep(60)
