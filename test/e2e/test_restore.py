"""A --tmp-file restore puts the saved files back before the tree runs.

The #65 scenario (log on stdout, a state file open read-write at an
offset, a config reread by path) after the directory is wiped; a restore
in a new mount namespace with an empty tmpfs on /tmp; --leave-running and
restoring twice; a changed file replaced by the dumped one.

Issue 22: a restore where nothing was wiped checks before extracting:
every saved entry still in place as saved (type, owner, mode, size,
mtime, content, xattrs, link target) is kept, inode and all, and when all
are, the archive is not read at all.

And when it cannot: a fault in placement, a nearly full tmpfs, a missing
decompressor change nothing and say why; a stale staging directory is
removed, one in use is not; the stage is next to the saved path, in the
nearest root-only directory.

Since criu writes plain regular files itself (not tar): content, owner,
mode with set-id and sticky bits, times to the ns, empty files, hard
links; tar still makes directories, links, sparse files and files with
xattrs; the log counts both.
"""
import os
import signal
import shutil
import subprocess
import time
from pathlib import Path

from conftest import (ARCHIVE, CRIU_OUTSIDE_TMP, App, check_back, dump_and_wipe, dump_sleeper, kill_tree, read_archive,
                      mounted_tmpfs, snapshot, wait_gone)



def test_issue65_scenario(app, criu):
    before, state, log = dump_and_wipe(app, criu, "--tmp-file", str(app.dir))
    assert not app.dir.exists()

    r = criu.restore()
    assert r.returncode == 0, r
    # One pass over the data: each file's checksum taken while tar extracted the next
    assert "(0 file(s) read again for their checksum)" in r.log
    check_back(app, before, log, state)


def test_restore_in_new_mount_ns_with_empty_tmp(app, criu):
    """Like a host that never had the files: /tmp is a fresh empty tmpfs."""
    before, state, log = dump_and_wipe(app, criu, "--tmp-file", str(app.dir))
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs tmpfs /tmp && test -z "$(ls -A /tmp)" && exec "$0" "$@"']
    criu.binary = CRIU_OUTSIDE_TMP  # the checkout may be under /tmp
    r = criu.restore(wrapper=wrapper)
    assert r.returncode == 0, r
    # The files exist in the restored task's namespace only.
    assert not app.dir.exists()
    root = "/proc/%d/root" % app.pid
    assert os.path.exists(root + str(app.dir / "app.conf"))
    app.restored()
    after = app.tick()
    assert after["conf"] == "mode=fast\n"
    assert after["ticks"] == before["ticks"] + 1
    with open(root + str(app.dir / "app.log")) as f:
        assert f.read() == log + "tick %d\n" % after["ticks"]


def test_leave_running_then_restore_twice(app, criu):
    app.start()
    r = criu.dump(app.pid, "--leave-running", "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    # The app changes its files only when it ticks: these are the files at the dump
    at_dump = {n: (app.dir / n).read_bytes() for n in ("state", "app.log", "app.conf")}
    dumped = app.tick()  # still running after the dump: the files change
    later = (app.dir / "state").read_bytes()
    assert later != at_dump["state"]
    app.popen.kill()
    app.wait_dead()

    for attempt in range(2):
        shutil.rmtree(app.dir)
        r = criu.restore()
        assert r.returncode == 0, (attempt, r)
        app.restored()
        # The files as they were at the dump, not as the app left them later
        assert {n: (app.dir / n).read_bytes() for n in at_dump} == at_dump, attempt
        after = app.tick()
        # Back at the dump point: the tick after it is repeated, and writes
        # the same record at the same offset as after the dump.
        assert after["ticks"] == dumped["ticks"]
        assert (app.dir / "state").read_bytes() == later
        os.kill(app.pid, signal.SIGKILL)
        wait_gone(app.pid)


def test_changed_file_is_replaced_by_dumped_version(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    (app.dir / "app.conf").write_text("mode=changed-after-dump, much longer\n")
    (app.dir / "extra").write_text("not in the image\n")

    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()
    assert app.tick()["conf"] == "mode=fast\n"
    assert (app.dir / "app.conf").read_text() == "mode=fast\n"
    # Files the image does not have are left alone.
    assert (app.dir / "extra").read_text() == "not in the image\n"
    # No temporary or staging names are left behind.
    assert sorted(os.listdir(app.dir)) == ["app.conf", "app.log", "extra", "state"]
    assert not [n for n in os.listdir("/tmp") if n.startswith(".criu-tmp-files")]


def restore_wiped(criu, procs, app, pid, **kw):
    """app removed (as after a reboot), then restore -d, which must pass;
    the restored pid is killed. The restore's result."""
    shutil.rmtree(app)
    r = criu.restore(**kw)
    assert r.returncode == 0, r
    procs.track(pid)
    kill_tree(pid)
    return r


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
    r = restore_wiped(criu, procs, app, pid)
    assert "Not every saved entry is in place as saved (first: %s)" % app in r.log
    assert {str(p): p.read_bytes() for p in (app / "sub").iterdir()} == content
    assert os.readlink(app / "link") == "sub/f00"


def test_fault_in_placement_changes_nothing(app, criu):
    for i in range(10):
        (app.dir / ("f%d" % i)).write_text("dumped %d\n" % i)
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    for i in range(0, 10, 2):
        (app.dir / ("f%d" % i)).write_text("current %d\n" % i)
    for i in range(1, 10, 2):
        (app.dir / ("f%d" % i)).unlink()
    before = snapshot(app.dir)

    r = criu.restore(env=dict(os.environ, CRIU_FAULT="8"))
    assert r.returncode != 0
    assert "Fault injected: placing" in r.output, r
    assert "Nothing of the --tmp-file archive was restored" in r.output
    assert snapshot(app.dir) == before
    wait_gone(app.pid)  # the task criu forked is gone


def test_fault_in_placement_into_a_wiped_directory_leaves_nothing(app, criu):
    # Wiped: the staged directory is moved to its place whole (root's and
    # 0700 until the end); a failure (injected at the move) moves it back
    # out, and the saved modes are those of a restore that succeeds.
    (app.dir / "sub").mkdir(mode=0o750)
    for i in range(10):
        (app.dir / "sub" / ("f%d" % i)).write_text("dumped %d\n" % i)
    modes = {p: os.lstat(p).st_mode for p in (app.dir, app.dir / "sub", app.dir / "sub" / "f3")}
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    shutil.rmtree(app.dir)
    before = snapshot(app.dir.parent)

    r = criu.restore(env=dict(os.environ, CRIU_FAULT="8"))
    assert r.returncode != 0
    assert "Fault injected: placing" in r.output, r
    assert "Nothing of the --tmp-file archive was restored" in r.output
    assert not app.dir.exists()
    assert snapshot(app.dir.parent) == before
    wait_gone(app.pid)

    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()
    assert (app.dir / "sub" / "f7").read_text() == "dumped 7\n"
    assert {p: os.lstat(p).st_mode for p in modes} == modes


def test_restore_into_nearly_full_tmpfs_replaces_nothing(procs, criu, workdir, tmpdir_tmp):
    mnt = tmpdir_tmp / "small"
    with mounted_tmpfs(mnt, "2m"):
        app = App(procs, mnt / "app", workdir / "report.json")
        app.prepare()
        (app.dir / "big").write_bytes(os.urandom(900 << 10))
        app.start()
        r = criu.dump(app.pid, "--tmp-file", str(app.dir))
        assert r.returncode == 0, r
        app.wait_dead()
        # The files are still there but changed, and the tmpfs is nearly full.
        (app.dir / "big").write_bytes(b"current big\n")
        (app.dir / "app.conf").write_text("mode=current\n")
        (mnt / "filler").write_bytes(b"f" * (1500 << 10))
        before = snapshot(mnt)

        r = criu.restore()
        assert r.returncode != 0
        # The stage is on the tmpfs too (the nearest root-only directory):
        # criu, writing big there itself, runs out of space before anything
        # is placed, and names the file.
        assert "Can't write %s of the --tmp-file archive into the stage: No space left on device" % \
            str(app.dir / "big").lstrip("/") in r.output, r
        assert "no file was restored" in r.output
        # and its summary does not blame the archive alone
        assert "or could not be written out (see above): no file was restored" in r.output, r
        assert snapshot(mnt) == before
        wait_gone(app.pid)


def test_missing_decompressor_at_restore_is_named(app, criu, workdir):
    """A zstd archive, and no zstd in criu's PATH at restore: the error
    names the program; it is not called a damaged archive."""
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-compress", "zstd")
    assert r.returncode == 0, r
    app.wait_dead()
    shutil.rmtree(app.dir)
    bindir = workdir / "bin"
    bindir.mkdir()
    for prog in ("tar", "gzip"):
        os.symlink(shutil.which(prog), bindir / prog)
    r = criu.restore(env=dict(os.environ, PATH=str(bindir)))
    assert r.returncode != 0
    assert ('Restoring the --tmp-file archive: zstd compression needs zstd, but "zstd" failed to compress '
            "nothing (is it in PATH?)") in r.log, r.log[-3000:]
    assert "damaged" not in r.log
    assert not app.dir.exists()


def deep_tree(top, depth=50):
    """A tree whose deepest path is longer than PATH_MAX (4096)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(depth):
            name = "d%02d" % i + "x" * 97
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
            f.write("deep\n")
    finally:
        os.close(fd)


def test_stale_staging_directory_is_removed_and_one_in_use_is_not(app, criu, procs):
    """A restore killed midway leaves its staging directory (mode 0700, in
    the nearest root-only directory above the saved path): the next
    restore there removes it, even with paths longer than PATH_MAX, but
    not one that a running restore holds locked."""
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    shutil.rmtree(app.dir)

    where = app.dir.parent
    stale = where / ".criu-tmp-files.1.dead"
    busy = where / ".criu-tmp-files.2.busy"
    for d in (stale, busy):
        d.mkdir(mode=0o700)
        deep_tree(d)
    # A restore in progress holds its staging directory with flock()
    holder = procs.start(["flock", "--exclusive", str(busy), "sleep", "1000"])
    try:
        deadline = time.time() + 10
        while subprocess.run(["flock", "--nonblock", "--exclusive", str(busy), "true"]).returncode == 0:
            assert time.time() < deadline
            time.sleep(0.02)
        r = criu.restore()
        assert r.returncode == 0, r
        app.restored()
        assert "Removing .criu-tmp-files.1.dead, left by a restore that did not finish" in r.log
        assert not stale.exists()
        assert busy.exists()
        assert not [n for n in os.listdir(where) if n.startswith(".criu-tmp-files.") and n != busy.name]
    finally:
        kill_tree(holder.pid)
        subprocess.run(["rm", "-rf", str(stale), str(busy)])


def test_stage_next_to_a_root_directory_restores(procs, criu, tmpdir_tmp):
    """The legitimate case: a saved path in a root-owned directory
    restores, and the log says where it staged (nearest root-only
    directory on the way, on the saved path's filesystem)."""
    app = Path(tmpdir_tmp) / "app"
    app.mkdir()
    (app / "f").write_text("saved\n")
    sleeper_pid = dump_sleeper(procs, criu, app)
    shutil.rmtree(app)
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(sleeper_pid)
    assert (app / "f").read_text() == "saved\n"
    assert "Staging the --tmp-file archive in %s/.criu-tmp-files." % tmpdir_tmp in r.log, r.log[-3000:]
    kill_tree(sleeper_pid)


def written_tree(d):
    """Files criu writes itself at restore (regular, not sparse, no xattr),
    and some tar still does: an xattr, a sparse file, a hard link."""
    app = Path(d) / "app"
    (app / "sub").mkdir(parents=True)
    files = {"plain": (os.urandom(300 << 10), 0o640), "setuid": (b"#!/bin/sh\n", 0o4755),
             "setgid": (b"g\n", 0o2750), "sticky": (b"s\n", 0o1644), "empty": (b"", 0o604),
             "linked": (b"two names\n", 0o644), "xattr": (b"x\n", 0o600)}
    for i, (name, (data, mode)) in enumerate(sorted(files.items())):
        p = app / name
        p.write_bytes(data)
        os.chown(p, 1234, 5678)
        os.chmod(p, mode)  # after chown, which clears set-id bits
        os.utime(p, ns=(1700000000_000000000 + i, 1600000000_123456789 + i))
    os.link(app / "linked", app / "sub" / "linked2")
    (app / "sub" / "deeper").mkdir()
    (app / "sub" / "deeper" / "inner").write_bytes(b"in a directory tar makes, or criu first\n")
    os.utime(app / "sub" / "deeper", ns=(1400000000_000000001, 1400000000_000000002))
    os.setxattr(app / "xattr", "user.tag", b"via tar")
    with open(app / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(b"middle")
    os.chmod(app / "sub", 0o751)
    os.utime(app / "sub", ns=(1500000000_000000001, 1500000000_000000002))
    return app


def stat_of(p):
    st = os.lstat(p)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink)


def test_tar_runs_only_for_a_member_criu_does_not_make(procs, criu, tmpdir_tmp, workdir):
    """Issue 22: with files and directories only, a wiped restore runs no
    tar at all (not even "tar --version"); a symlink needs tar, and a tar
    that is missing then fails the restore by name, with nothing placed."""
    bindir = workdir / "bin"
    bindir.mkdir()
    runs = workdir / "tar-runs"
    (bindir / "tar").write_text('#!/bin/sh\necho "$*" >> %s\nexec /usr/bin/tar "$@"\n' % runs)
    (bindir / "tar").chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]))
    app = tmpdir_tmp / "app"
    (app / "sub").mkdir(parents=True)
    (app / "sub" / "f").write_text("data\n")
    os.chmod(app / "sub", 0o751)
    os.utime(app / "sub", ns=(1500000000_000000001, 1500000000_000000002))
    before = {str(p): stat_of(p) for p in [app] + sorted(app.rglob("*"))}
    pid = dump_sleeper(procs, criu, app, "--tmp-file-compress", "none")
    r = restore_wiped(criu, procs, app, pid, env=env)
    assert not runs.exists(), runs.read_text()
    assert {str(p): stat_of(p) for p in [app] + sorted(app.rglob("*"))} == before
    assert (app / "sub" / "f").read_text() == "data\n"

    os.symlink("sub/f", app / "link")
    pid = dump_sleeper(procs, criu, app, "--tmp-file-compress", "none")
    shutil.rmtree(app)
    (bindir / "tar").write_text("#!/bin/sh\nexit 127\n")
    r = criu.restore(env=env)
    assert r.returncode != 0
    assert 'Restoring the --tmp-file archive needs GNU tar, but "tar --version" failed' in r.output, r
    assert "no file was restored" in r.output, r
    assert not app.exists()
    wait_gone(pid)


def test_saved_directory_with_an_acl_wiped_or_changed(procs, criu, tmpdir_tmp):
    """A saved directory with an access ACL (its mask is the mode's group
    bits) and a default ACL: wiped, it is moved to its target whole,
    0700 meanwhile; there with a file changed, it is fixed in place from
    the staged one. Either way its ACLs, mode and mtime are the saved
    ones."""
    app = tmpdir_tmp / "app"
    (app / "sub").mkdir(parents=True)
    (app / "sub" / "f").write_text("saved\n")
    subprocess.run(["setfacl", "-m", "u:1234:rx,g:5678:rx", str(app / "sub")], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rx", str(app / "sub")], check=True)
    os.utime(app / "sub", ns=(1500000000_000000001, 1500000000_000000002))

    def state():
        acl = subprocess.run(["getfacl", "-cp", str(app / "sub")], capture_output=True, text=True, check=True)
        return acl.stdout, stat_of(app / "sub"), (app / "sub" / "f").read_text()

    before = state()
    assert "mask::r-x" in before[0] and "default:user:1234:r-x" in before[0], before
    pid = dump_sleeper(procs, criu, app, "--tmp-file-compress", "none")
    r = restore_wiped(criu, procs, app, pid)
    wait_gone(pid)
    assert state() == before

    (app / "sub" / "f").write_text("changed\n")
    os.utime(app / "sub", ns=(1500000000_000000001, 1500000000_000000002))
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(pid)
    kill_tree(pid)
    assert "1 written" in r.log, r.log[-2000:]
    assert state() == before


def test_wiped_directory_staged_on_another_filesystem(procs, criu, tmpdir_tmp):
    """The saved directory is on a tmpfs whose root belongs to its user:
    no stage there (not root's only), so the stage is on another
    filesystem, and the wiped directory, which cannot be moved there
    whole, is made and its entries copied one by one, hard link, symlink,
    owners, modes and times as saved."""
    mnt = tmpdir_tmp / "users"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,uid=1000,gid=1000,mode=0755", "tmpfs", str(mnt)],
                   check=True)
    try:
        app = mnt / "app"
        (app / "sub" / "deeper").mkdir(parents=True)
        (app / "sub" / "f").write_text("a\n")
        (app / "top").write_text("b\n")
        os.symlink("sub/f", app / "link")
        os.link(app / "top", app / "sub" / "hard")
        subprocess.run(["chown", "-R", "-h", "1000:1000", str(app)], check=True)
        os.chmod(app / "sub", 0o750)
        os.utime(app / "sub", ns=(1500000000_000000001, 1500000000_000000002))
        entries = [app] + sorted(app.rglob("*"))
        before = {str(p): (stat_of(p), None if p.is_dir() or p.is_symlink() else p.read_bytes()) for p in entries}
        pid = dump_sleeper(procs, criu, app, "--tmp-file-compress", "none")
        r = restore_wiped(criu, procs, app, pid)
        assert "Staging the --tmp-file archive in %s/" % mnt not in r.log
        assert "0 entries kept as they were, 4 written" in r.log, r.log[-2000:]
        assert {str(p): (stat_of(p), None if p.is_dir() or p.is_symlink() else p.read_bytes())
                for p in entries} == before
        assert os.stat(app / "top").st_ino == os.stat(app / "sub" / "hard").st_ino
        assert os.readlink(app / "link") == "sub/f"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_wiped_files_written_by_criu(procs, criu, tmpdir_tmp):
    """Issue 22: with the directory wiped, criu writes the regular files of
    the archive into the stage itself (content, owner, mode with set-id and
    sticky bits, mtime to the ns), and the directories (mode, mtime to the
    ns, set once everything is in them); xattrs, sparse files, hard links
    still go through tar."""
    app = written_tree(tmpdir_tmp)
    entries = [app] + sorted(app.rglob("*"))
    before = {str(p): (stat_of(p), None if p.is_dir() else p.read_bytes()) for p in entries}
    pid = dump_sleeper(procs, criu, app, "--tmp-file-compress", "none")
    atimes = {m.name: m.pax_headers.get("atime") for m, _ in read_archive(criu.images, "r:")}
    r = restore_wiped(criu, procs, app, pid)
    restored_atime = os.stat(app / "plain").st_atime_ns  # before a read updates it (relatime)
    # sub/linked2 (a link), xattr, sparse: tar's; the rest (app, sub, sub/deeper too) criu's
    assert "13 members checked: 10 written by criu (%d bytes), 3 handed to tar" % ((300 << 10) + 64) in r.log, \
        [ln for ln in r.log.splitlines() if "members checked" in ln]
    assert {str(p): (stat_of(p), None if p.is_dir() else p.read_bytes()) for p in entries} == before
    assert os.stat(app / "linked").st_ino == os.stat(app / "sub" / "linked2").st_ino
    assert os.getxattr(app / "xattr", "user.tag") == b"via tar"
    assert os.stat(app / "sparse").st_blocks * 512 < 1 << 20
    # atime as tar sets it: the archive's
    sec, frac = atimes[str(app / "plain").lstrip("/")].split(".")
    assert restored_atime == int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
    assert not [n for n in os.listdir(tmpdir_tmp) if n.startswith(".criu-tmp-files.")]
