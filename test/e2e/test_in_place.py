"""Issue 22: a restore where nothing was wiped checks before extracting.

Every saved entry that is still in place as it was saved (type, owner,
mode, size, mtime, content, xattrs, link target) is kept, inode and all;
when all are, the archive is not read at all and nothing is written.
"""
import os
import shutil
from pathlib import Path

from conftest import ARCHIVE, dump_sleeper, kill_tree


def make_app(d):
    app = Path(d) / "app"
    (app / "sub").mkdir(parents=True)
    for i in range(50):
        (app / "sub" / ("f%02d" % i)).write_bytes(os.urandom(4096))
    (app / "link").symlink_to("sub/f00")
    os.mkfifo(app / "fifo")
    os.setxattr(app / "sub" / "f01", "user.tag", b"v1")
    return app


def inodes(app):
    return {str(p): (os.lstat(p).st_ino, os.lstat(p).st_mtime_ns) for p in sorted(app.rglob("*"))}


def test_nothing_wiped_reads_no_archive(procs, criu, tmpdir_tmp):
    app = make_app(tmpdir_tmp)
    pid = dump_sleeper(procs, criu, app)
    before = inodes(app)
    # The archive is not needed: damage it
    (Path(criu.images) / ARCHIVE).write_bytes(b"not an archive")
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(pid)
    kill_tree(pid)
    assert "54 entries kept as they were, 0 written: every saved entry is in place, the archive is not read" \
        in r.log, [ln for ln in r.log.splitlines() if "tmp-files" in ln]
    assert inodes(app) == before
    assert not [n for n in os.listdir(tmpdir_tmp) if n.startswith(".criu-tmp-files.")]


def test_one_changed_entry_extracts(procs, criu, tmpdir_tmp):
    """One file's xattr changed, one file's content changed with its mtime
    put back: each is found, and the archive is extracted; the others
    keep their inodes."""
    app = make_app(tmpdir_tmp)
    pid = dump_sleeper(procs, criu, app)
    saved = (app / "sub" / "f02").read_bytes()
    st = os.stat(app / "sub" / "f02")
    with open(app / "sub" / "f02", "r+b") as f:
        f.write(b"X" * 16)
    os.utime(app / "sub" / "f02", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.setxattr(app / "sub" / "f01", "user.tag", b"v2")
    kept = os.stat(app / "sub" / "f03").st_ino
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(pid)
    kill_tree(pid)
    assert "Not every saved entry is in place as saved (first: %s)" % (app / "sub" / "f01") in r.log, r.log[-3000:]
    assert (app / "sub" / "f02").read_bytes() == saved
    assert os.getxattr(app / "sub" / "f01", "user.tag") == b"v1"
    assert os.stat(app / "sub" / "f03").st_ino == kept


def test_wiped_extracts(procs, criu, tmpdir_tmp):
    app = make_app(tmpdir_tmp)
    content = {str(p): p.read_bytes() for p in (app / "sub").iterdir()}
    pid = dump_sleeper(procs, criu, app)
    shutil.rmtree(app)
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(pid)
    kill_tree(pid)
    assert "Not every saved entry is in place as saved (first: %s)" % app in r.log
    assert {str(p): p.read_bytes() for p in (app / "sub").iterdir()} == content
    assert os.readlink(app / "link") == "sub/f00"
