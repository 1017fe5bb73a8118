"""The dumped tree against --tmp-file-precopy (issue 20, holes 3 and 7).

The pre-copy archives the saved paths while the tree runs, and the
frozen pass keeps what it can prove unchanged. A hostile tree tries to
make it keep something else:

- hole 3: a chroot swaps a saved directory for a symlink to a host
  directory exactly while the pre-copy's tar reads the names (tar reads
  through /proc/PID/root, where an absolute symlink leads to the host),
  and back before the freeze. An entry the walk saw as a directory was
  archived as a host root 0600 file, and kept. Now only a regular
  member whose data is what the checksum child read from the walked
  inode is kept; every other entry is archived again while frozen.
- hole 7: the tree writes a saved file through a shared mapping whose
  pages were writable already, after the pre-copy read it, and unmaps
  it before the freeze: no file time changes. Now a file a process of the
  tree maps shared at the start of the pre-copy is archived again.

Each race is armed by inotify in the tree (no sleeps); the swap is
repeated and counted (the test asserts that the attack ran), the write
is made between the passes in every round (the test's tar waits for it). Both fail with the rules
removed (see README "Tests" for the numbers). The legitimate cases
restore exactly.
"""
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import time

import pytest

from conftest import APPS, ARCHIVE, STAGE, alive, kill_tree, mounted_tmpfs, wait_gone, wait_report
from precopy import between_the_passes, state

# Rounds until tar read the host file, and the freeze saw the directory
# again, in SWAP_WINS of them (at most SWAP_ROUNDS)
SWAP_WINS = int(os.environ.get("THREAT_SWAP_WINS", "10"))
SWAP_ROUNDS = int(os.environ.get("THREAT_SWAP_ROUNDS", "80"))
# Rounds of the shared writer, each with its write between the passes
MAP_WRITES = int(os.environ.get("THREAT_MAP_WRITES", "4"))


def again(log):
    """{path archived again by the frozen pass: why}, from a dump log at -v4"""
    return dict(re.findall(r"Pre-copy: (.*) archived again: (.*)", log))


def kept(log):
    m = re.search(r"Pre-copy: (\d+) of (\d+) entries kept", log)
    assert m, log[-3000:]
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def swapper():
    """apps/precopy_swap.c, static: the chroot holds nothing else."""
    exe = STAGE / "precopy_swap"
    if not exe.exists():
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(exe), str(APPS / "precopy_swap.c")],
                       check=True, capture_output=True, text=True)
    return exe


def unswap(data):
    """/data/sub a directory again, /data/sublink the symlink (after a
    round in which the tree was frozen or killed between its swaps)."""
    if os.path.islink(data / "sub"):
        os.rename(data / "sub", data / "tmp")
        os.rename(data / "sublink", data / "sub")
        os.rename(data / "tmp", data / "sublink")


def test_swapped_directory_never_brings_a_host_file(procs, criu, workdir, swapper):
    """A chroot whose saved /data/sub/x is a directory, and whose
    /data/sublink is an absolute symlink to the name of a root-only host
    directory holding a root 0600 file x. The tree swaps sub and sublink
    (RENAME_EXCHANGE) when the pre-copy opens /data/0trig, the first file
    it reads, and back when both readers are done with /data/zz, the last
    one: in between, tar's lstat("data/sub/x") through /proc/PID/root is
    the host's file. At the freeze /data/sub/x is the unchanged directory
    again. No byte of the host file may reach the images, and the archive
    must hold x as a directory."""
    secret = b"HOST-SECRET-" + secrets.token_hex(16).encode() + b"\n"
    host = workdir / "host"
    host.mkdir(mode=0o700)
    (host / "x").write_bytes(secret * 64)
    os.chmod(host / "x", 0o600)

    root = workdir / "chroot"
    data = root / "data"
    for d in ("bin", "ctl", "data/pad"):
        (root / d).mkdir(parents=True)
    shutil.copy2(swapper, root / "bin/precopy_swap")
    # In the order of their ctimes, which is the order tar reads them in:
    # the trigger first, padding (time for the tree to swap), x, zz last
    (data / "0trig").write_bytes(b"read me first\n")
    for i in range(100):
        (data / "pad" / ("p%03d" % i)).write_bytes(b"pad %d\n" % i)
    (data / "sub/x").mkdir(parents=True)
    (data / "sub/x/inner").write_bytes(b"the tree's own\n")
    os.symlink(str(host), data / "sublink")
    (data / "zz").write_bytes(b"read me last\n")

    report = root / "ctl/report"
    swapped = back = read_host = won = i = 0
    while won < SWAP_WINS:
        i += 1
        assert i <= SWAP_ROUNDS, (swapped, back, read_host, won)
        unswap(data)
        report.unlink(missing_ok=True)
        task = procs.start(["chroot", str(root), "/bin/precopy_swap", "/ctl/report"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_report(report.read_text, lambda t: t == "ready\n", "the swapping tree did not start", popen=task)
        images = criu.images / str(i)
        r = criu.dump(task.pid, "--tmp-file", "/data", "--tmp-file-precopy", "--tmp-file-compress", "none",
                      "--leave-running", images=images)
        assert r.returncode == 0, r
        assert alive(task.pid)
        kill_tree(task.pid)
        task.wait(timeout=10)
        wait_gone(task.pid)
        # Read once the tree is dead: it may have swapped (back) after the freeze
        swapped += report.read_text() != "ready\n"

        raw = (images / ARCHIVE).read_bytes()
        assert secret not in raw, "round %d: the host file is in the images" % i
        hit = "the member of /data/sub/x is of type '0', not what the walk saw there" in r.log
        read_host += hit
        with tarfile.open(images / ARCHIVE) as t:
            # Else frozen before the tree swapped back: x is not in the images
            if t.getmember("data/sub").isdir():
                back += 1
                won += hit
                # The freeze saw the directory: it is archived as one. In a
                # round where tar read the host file, the pre-copy's member
                # is dropped; in the others, with the change record, the
                # directory's own member may be kept, and the archive must
                # say the same either way
                if hit:
                    assert again(r.log).get("/data/sub/x") in (
                        "not a regular file: archived while frozen (no data to copy)",
                        # with the change record: the member is not the directory's
                        "a directory whose member says other or more than its lstat() (xattrs, ACLs)"), i
                x = t.getmember("data/sub/x")
                assert x.isdir(), (i, x.type)
                assert t.extractfile("data/sub/x/inner").read() == b"the tree's own\n"
        shutil.rmtree(images)
    # The attack ran: in SWAP_WINS rounds the tree swapped and back before
    # the freeze, and tar archived the host file under x's name while the
    # walk and the freeze saw a directory there (without the type rule,
    # each of those rounds put the host file into the images)
    print("swap tree: swapped in %d of %d pre-copies, back by the freeze in %d; tar read the host file in %d, "
          "%d of them with x a directory again at the freeze" % (swapped, i, back, read_host, won))


def test_only_regular_data_is_kept_and_restores(procs, criu, tmpdir_tmp):
    """The legitimate case: a quiet tree's saved directory with nested
    directories, a symlink, a fifo, an empty file, files and a hard link
    pair. The single-link regular files are kept from the pre-copy; the
    directories, the symlink, the fifo and the hard linked names are
    archived again while frozen; restore gives back every entry exactly."""
    d = tmpdir_tmp / "quiet"
    (d / "a/b").mkdir(parents=True)
    (d / "a/b/deep").write_bytes(os.urandom(300000))
    (d / "a/one").write_bytes(b"one\n")
    (d / "empty").write_bytes(b"")
    (d / "hl1").write_bytes(b"linked\n")
    os.link(d / "hl1", d / "a/hl2")
    os.symlink("a/b", d / "sym")
    os.mkfifo(d / "fifo")
    os.chmod(d / "a", 0o750)
    old = 1_600_000_000
    for p in sorted(d.rglob("*"), reverse=True) + [d]:
        os.utime(p, (old, old), follow_symlinks=False)
    time.sleep(0.05)  # every ctime older than the start of the pre-copy
    task = procs.start(["sleep", "1000"])
    r = criu.dump(task.pid, "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress", "none")
    assert r.returncode == 0, r
    task.wait(timeout=10)
    wait_gone(task.pid)
    why = again(r.log)
    regular = {str(d / n) for n in ("a/b/deep", "a/one", "empty")}
    assert not regular & set(why), why
    # With the change record (tmp-files-watch.c), a directory's member
    # that says exactly what its lstat() says is kept too
    record = "the frozen pass looks only at those" in r.log
    others = {str(d / n) for n in ("sym", "fifo") + (() if record else ("", "a", "a/b"))}
    assert {p: why.get(p) for p in others} == \
        {p: "not a regular file: archived while frozen (no data to copy)" for p in others}
    assert why[str(d / "hl1")] == why[str(d / "a/hl2")] == \
        "it has hard links: its names are archived together while frozen"
    assert kept(r.log) == (6 if record else 3, 10)

    frozen = state(d)
    shutil.rmtree(d)
    r = criu.restore("--leave-stopped")
    assert r.returncode == 0, r
    procs.track(task.pid)
    assert state(d) == frozen
    kill_tree(task.pid)
    wait_gone(task.pid)


@pytest.mark.parametrize("precopy", [False, True], ids=["single", "precopy"])
def test_device_node_fails_the_dump(procs, criu, tmpdir_tmp, precopy):
    """A device node in a saved directory (restore would make it as root)
    fails the dump, naming it; the tree runs on, no image is left."""
    d = tmpdir_tmp / "dev"
    d.mkdir()
    (d / "file").write_bytes(b"file\n")
    os.mknod(d / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    task = procs.start(["sleep", "1000"])
    r = criu.dump(task.pid, "--tmp-file", str(d), "--leave-running",
                  *(["--tmp-file-precopy"] if precopy else []))
    assert r.returncode != 0
    assert "--tmp-file: %s is a device node: refusing to save it" % (d / "null") in r.log, r
    assert not list(criu.images.glob("tmp-files*"))
    assert alive(task.pid)


@pytest.fixture(params=["tmpfs", "disk"])
def where(request, tmpdir_tmp):
    """A tmpfs of the test's own (a write through a shared mapping never
    changes a time there), or the disk /tmp is on (where it changes them
    only on the write fault after the page was clean)."""
    if request.param == "disk":
        yield tmpdir_tmp
        return
    with mounted_tmpfs(tmpdir_tmp / "mnt", "64m") as mnt:
        yield mnt


def test_write_through_an_old_shared_mapping_is_not_lost(procs, criu, workdir, where):
    """apps/shared_writer.py: a process forked by a thread of the tree's
    root maps a saved file shared and dirties it, so that its pages are
    writable; once the pre-copy's checksum child and tar have read the
    file (inotify) and the pre-copy's tar is done (the test's tar signals
    it, and the dump waits for it before the freeze:
    precopy.between_the_passes), it writes new data through the
    mapping and unmaps it. No time of the file changes: only the mapping
    seen at the start of the pre-copy says the member read then is stale.
    In every round, the restore (tree left stopped) must give the data
    written last."""
    report = workdir / "writer.report"
    env, ack, steps = between_the_passes(workdir)
    for i in range(1, MAP_WRITES + 1):
        d = where / ("w%d" % i)
        d.mkdir()
        report.unlink(missing_ok=True)
        p = procs.start(["/usr/bin/python3", str(APPS / "shared_writer.py"), str(d / "f"), str(report), str(ack)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids = wait_report(lambda: [int(x) for x in report.read_text().split()[:2]],
                           lambda v: len(v) == 2 and v[0] == p.pid, "shared_writer.py did not start", popen=p)
        env["CHURN_PID"] = str(pids[1])
        images = criu.images / str(i)
        dump = criu.dump(p.pid, "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress", "none",
                         images=images, env=env)
        assert dump.returncode == 0, dump
        p.wait(timeout=10)
        wait_gone(pids[1])
        # The writer wrote between the passes, before the freeze
        assert steps.read_text().split() == ["written"] * i, steps.read_text()
        assert report.read_text().split()[2:] == ["written"]
        frozen = (d / "f").read_bytes()
        assert frozen == b"C" * (64 << 10)
        shutil.rmtree(d)
        r = criu.restore("--leave-stopped", images=images)
        assert r.returncode == 0, r
        procs.track(p.pid)
        assert (d / "f").read_bytes() == frozen, "round %d: the data written last was lost" % i
        # The writer, a child of a thread, was found at the start
        m = re.search(r"Pre-copy: (\d+) process\(es\) in the tree, (\d+) shared mapping\(s\) of files at its start",
                      dump.log)
        assert m and int(m.group(1)) == 2, dump.log[-3000:]
        assert again(dump.log).get(str(d / "f")) == \
            "mapped shared by the tree: writes through the mapping may leave the ctime as it was"
        kill_tree(p.pid)
        wait_gone(p.pid)
        wait_gone(pids[1])
        shutil.rmtree(images)
        shutil.rmtree(d)
