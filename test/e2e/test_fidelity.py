"""--tmp-file puts back what the user had: metadata, links, holes, xattrs.

The tree is described before dump and after restore by what lstat,
readlink, the xattr calls and the content say, and the two must be equal.
It is restored once onto the same filesystem as the staging directory
(entries are renamed into place) and once onto another tmpfs (entries are
copied under a temporary name, then renamed).
"""
import hashlib
import os
import shutil
import stat
import subprocess

import pytest

from conftest import App, ARCHIVE, mounted_tmpfs

# struct vfs_cap_data, revision 2, effective, CAP_NET_BIND_SERVICE permitted
FCAP = (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)


def describe(root):
    root = os.fsencode(root)
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(p, root))
            st = os.lstat(p)
            d = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
                 "mtime_ns": st.st_mtime_ns}
            d["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False)
                           for k in sorted(os.listxattr(p, follow_symlinks=False))}
            if stat.S_ISREG(st.st_mode):
                d["size"] = st.st_size
                d["nlink"] = st.st_nlink
                d["inode"] = inodes.setdefault(st.st_ino, rel)
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                d["sha256"] = h.hexdigest()
                d["sparse"] = st.st_blocks * 512 < st.st_size // 2
            elif stat.S_ISLNK(st.st_mode):
                d["target"] = os.readlink(p)
            out[rel] = d
    return out


def make_tree(t):
    t.mkdir()
    os.makedirs(t / "a/b/c")
    (t / "a/b/c/deep.txt").write_text("deep\n")
    (t / "empty").write_bytes(b"")
    os.mkdir(t / "emptydir")
    (t / "with space.txt").write_text("space\n")
    (t / "new\nline").write_text("newline\n")
    with open(os.path.join(os.fsencode(t), b"bad\xff\xfename"), "wb") as f:
        f.write(b"not utf-8\n")
    (t / "hard1").write_text("one inode\n")
    os.link(t / "hard1", t / "a/hard2")
    os.symlink("a/b/c/deep.txt", t / "rel-link")
    os.symlink("/nonexistent/target", t / "dangling-link")
    os.mkfifo(t / "fifo")
    with open(t / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(8 << 20)
        f.write(b"tail")
    (t / "owned").write_text("owned\n")
    os.chown(t / "owned", 1234, 5678)
    os.chown(t / "a/b", 4321, 8765)
    (t / "setuid").write_text("#!/bin/sh\n")
    os.chown(t / "setuid", 1234, 5678)
    os.chmod(t / "setuid", 0o4750)
    (t / "setgid").write_text("x\n")
    os.chmod(t / "setgid", 0o2711)
    os.mkdir(t / "sticky")
    os.chmod(t / "sticky", 0o1777)
    os.chmod(t / "a/b/c/deep.txt", 0o400)
    (t / "xattr").write_text("x\n")
    os.setxattr(t / "xattr", "user.comment", b"hello xattr")
    os.setxattr(t / "a", "user.dir", b"on a directory")
    (t / "cap").write_text("#!/bin/sh\n")
    os.chmod(t / "cap", 0o755)
    os.setxattr(t / "cap", "security.capability", FCAP)
    (t / "acl").write_text("acl\n")
    subprocess.run(["setfacl", "-m", "u:1234:rwx,g:5678:r", str(t / "acl")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rx", str(t / "sticky")], check=True)
    os.utime(t / "with space.txt", ns=(1_000_000_000_123_456_789, 1_234_567_890_123_456_789))
    os.utime(t / "a/b", ns=(1_000_000_000_000_000_001, 1_111_111_111_987_654_321))
    os.utime(t / "rel-link", ns=(1_000_000_000, 1_222_222_222_555_555_555), follow_symlinks=False)


def dump_restore(procs, criu, workdir, tree):
    app = App(procs, tree.parent / "app", workdir / "report.json")
    app.prepare()
    app.start()
    expected = describe(tree)
    r = criu.dump(app.pid, "--tmp-file", str(tree), "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    shutil.rmtree(tree)
    shutil.rmtree(app.dir)
    r = criu.restore()
    assert r.returncode == 0, r
    # Every name tar printed while extracting (newlines, non-UTF-8 bytes)
    # was matched to the manifest: the checksums taken then were used.
    assert "every file is read again" not in r.log
    app.restored()
    app.tick()
    return expected


def test_fidelity_rename_path(procs, criu, workdir, tmpdir_tmp):
    tree = tmpdir_tmp / "tree"
    make_tree(tree)
    expected = dump_restore(procs, criu, workdir, tree)
    assert describe(tree) == expected
    assert expected["sparse"]["sparse"] and expected["hard1"]["nlink"] == 2
    assert expected["cap"]["xattrs"]["security.capability"] == FCAP
    assert "system.posix_acl_access" in expected["acl"]["xattrs"]


@pytest.fixture
def other_tmpfs(tmpdir_tmp):
    mnt = tmpdir_tmp / "mnt"
    with mounted_tmpfs(mnt, "1200m"):
        yield mnt


def test_fidelity_copy_path(procs, criu, workdir, other_tmpfs):
    """The targets are on another filesystem than the staging directory."""
    tree = other_tmpfs / "tree"
    make_tree(tree)
    expected = dump_restore(procs, criu, workdir, tree)
    assert describe(tree) == expected


def test_big_sparse_file_and_many_small_files(procs, criu, workdir, other_tmpfs):
    tree = other_tmpfs / "big"
    tree.mkdir()
    with open(tree / "1GiB-sparse", "wb") as f:
        f.write(b"start")
        f.seek((1 << 30) - 3)
        f.write(b"end")
    many = tree / "many"
    many.mkdir()
    for i in range(10000):
        (many / ("f%05d" % i)).write_text("file %d\n" % i)
    expected = dump_restore(procs, criu, workdir, tree)
    assert os.path.getsize(criu.images / ARCHIVE) < 4 << 20
    st = os.stat(tree / "1GiB-sparse")
    assert st.st_size == 1 << 30 and st.st_blocks * 512 < 1 << 20
    assert len(os.listdir(many)) == 10000
    assert describe(tree) == expected
