"""--tmp-file-precopy with the change record (criu/tmp-files-watch.c,
issue 22): fanotify marks placed before the pre-copy's walk tell the
frozen pass what changed, and it looks only at that. Each test changes
the saved directory exactly once, between the two passes (apps/window.py,
paused there by precopy.between_the_passes), and the restored
directory must be the directory at the freeze.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import SYSCALLS, held_in, kill_tree, mounted_tmpfs, swap_while_held, wait_gone
from precopy import between_the_passes, kept, restores_as_frozen, start_app, wait_ctimes_past

RECORD = "the frozen pass looks only at those"
FALLBACK = "the frozen pass checks every entry"
DIR_XATTRS = "a directory whose member says other or more than its lstat() (xattrs, ACLs)"
WRITTEN = "written since the pre-copy started (fanotify), whatever its times say"
def window(procs, criu, workdir, d, mode, *more, prepare=None, saved=()):
    """window.py in d, one dump of d (and the paths saved) with the change
    of mode between the passes: (process, dump result)"""
    env, ack, steps = between_the_passes(workdir)
    p = start_app(procs, "window.py", d, workdir / "window.ready", ack, mode, *more)
    env["CHURN_PID"] = str(p.pid)
    if prepare:
        prepare(d)
    wait_ctimes_past(d)  # the unchanged files are kept by the ctime rule
    more_paths = [a for s in saved for a in ("--tmp-file", str(s))]
    r = criu.dump(p.pid, "--tmp-file", str(d), *more_paths, "--tmp-file-precopy", "--tmp-file-compress", "none",
                  env=env)
    assert r.returncode == 0, r
    p.wait(timeout=10)
    assert steps.read_text().split() == ["done"]  # the change was made between the passes
    return p, r


def lstats(log):
    """The lstat()s of the frozen walk from the record, or None"""
    m = re.search(r"walked from the change record with (\d+) lstat", log)
    return int(m.group(1)) if m else None


def subdirs(d):
    """sub/f, and a directory with an xattr"""
    (d / "sub").mkdir()
    (d / "sub/f").write_bytes(b"f\n")
    (d / "xattr").mkdir()
    os.setxattr(d / "xattr", "user.test", b"kept by tar")


def test_changes_between_the_passes_with_the_record(procs, criu, workdir, tmpdir_tmp):
    """A file rewritten with its mtime set back, a file swapped for a fifo,
    one for a symlink to /etc/shadow, a file made and one removed: the
    record names them, the frozen pass stats only those (not the 300
    unchanged files), archives them again as they are, and the restore
    gives the new data, the fifo and the symlink (never the host file).
    An unchanged directory's member is kept; one with an xattr (which the
    member check does not compare) is archived again."""
    with mounted_tmpfs(tmpdir_tmp / "mnt", "64m") as mnt:
        d = mnt / "app"
        d.mkdir()
        p, r = window(procs, criu, workdir, d, "swap", prepare=subdirs)
        assert RECORD in r.log and FALLBACK not in r.log, r.log[-3000:]
        n = lstats(r.log)
        assert n is not None and n < 20, n
        k, walked, again, _ = kept(r.log)
        assert again.get(str(d / "data")) == "changed since the pre-copy", again
        assert again.get(str(d / "fifo")).startswith("not a regular file"), again
        assert again.get(str(d / "link")).startswith("not a regular file"), again
        assert again.get(str(d / "new.txt")) == "new, or not archived by the pre-copy", again
        assert again.get(str(d)) == "changed since the pre-copy", again  # names came and went
        assert again.get(str(d / "xattr")) == DIR_XATTRS, again
        # kept.1 to kept.299, mapped, sub and sub/f
        assert str(d / "kept.0") not in again and str(d / "sub") not in again and k == 302, (k, again)
        listing = subprocess.run(["tar", "-tvf", str(criu.images / "tmp-files.tar.img")],
                                 capture_output=True, text=True, check=True).stdout
        assert re.search(r"^l.* %s -> /etc/shadow$" % re.escape(str(d / "link")[1:]), listing, re.M), listing
        assert re.search(r"^p.* %s$" % re.escape(str(d / "fifo")[1:]), listing, re.M), listing
        assert b"root:" not in (criu.images / "tmp-files.tar.img").read_bytes()
        assert (d / "data").read_bytes() == b"NEW\n" * 16384
        restores_as_frozen(criu, procs, p, d)
        assert (d / "data").read_bytes() == b"NEW\n" * 16384
        assert os.readlink(d / "link") == "/etc/shadow"
        assert os.getxattr(d / "xattr", "user.test") == b"kept by tar"
        assert (d / "sub/f").read_bytes() == b"f\n"


def test_queue_overflow_falls_back_to_the_full_check(procs, criu, workdir, tmpdir_tmp):
    """More events between the passes than the queue holds (files made
    next to the saved directory, on its filesystem), then a file of it
    rewritten with its mtime set back: that event is lost with the
    overflow. The frozen pass says so and checks every entry, which finds
    the rewrite by its ctime; the restored file has the new data."""
    limit = int(Path("/proc/sys/fs/fanotify/max_queued_events").read_text())
    with mounted_tmpfs(tmpdir_tmp / "mnt", "128m") as mnt:
        d = mnt / "app"
        d.mkdir()
        p, r = window(procs, criu, workdir, d, "flood", limit // 2 + 2000)
        assert "the change record cannot be used: the queue overflowed" in r.log, r.log[-3000:]
        assert re.search(r"Warn .*the queue overflowed.*%s" % FALLBACK, r.log), r.log[-3000:]
        assert RECORD not in r.log and lstats(r.log) is None
        k, walked, again, _ = kept(r.log)
        assert again.get(str(d / "data")) == "changed since the pre-copy", again
        assert k >= 300, (k, again)  # the unchanged files are still kept by the full check
        restores_as_frozen(criu, procs, p, d)
        assert (d / "data").read_bytes() == b"NEW\n" * 16384


def test_write_through_a_mapping_gone_by_the_freeze(procs, criu, workdir, tmpdir_tmp):
    """A mapping made after the pre-copy started and gone by the freeze is
    in no list of shared mappings (Documentation/tmp-file.txt, "What this
    cannot see"), and a write through it is no fanotify event. Its unmap
    is a close_write of the file: the record marks it written, whatever
    its times say (here, on 6.18, the first write fault changed them too),
    and the file is archived again and restored with that data."""
    with mounted_tmpfs(tmpdir_tmp / "mnt", "64m") as mnt:
        d = mnt / "app"
        d.mkdir()
        p, r = window(procs, criu, workdir, d, "mapped")
        assert RECORD in r.log, r.log[-3000:]
        again = kept(r.log)[2]
        assert again.get(str(d / "mapped")) in ("changed since the pre-copy", WRITTEN), again
        assert (d / "mapped").read_bytes()[:8] == b"MAP\nold\n"
        restores_as_frozen(criu, procs, p, d)
        assert (d / "mapped").read_bytes()[:8] == b"MAP\nold\n"


def test_filesystem_that_cannot_report_falls_back(procs, criu, workdir, tmpdir_tmp):
    """ramfs is not one of the filesystems the record watches (tmpfs,
    ext4, xfs, btrfs), and has no file handles for a mark with FID
    reporting anyway. The dump says so, checks every entry, and the
    changes between the passes are restored as on tmpfs."""
    mnt = tmpdir_tmp / "ramfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        d = mnt / "app"
        d.mkdir()
        p, r = window(procs, criu, workdir, d, "swap")
        assert re.search(r"Warn .*%s is on a filesystem \(type 0x858458f6\) whose changes fanotify may not all "
                         r"see: %s" % (re.escape(str(d)), FALLBACK), r.log), r.log[-3000:]
        assert RECORD not in r.log
        again = kept(r.log)[2]
        assert again.get(str(d / "data")) == "changed since the pre-copy", again
        restores_as_frozen(criu, procs, p, d)
        assert (d / "data").read_bytes() == b"NEW\n" * 16384
        assert os.readlink(d / "link") == "/etc/shadow"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_busy_filesystem_falls_back_to_the_full_check(procs, criu, workdir, tmpdir_tmp):
    """Fewer events than the queue holds, but 3,000 new inodes next to the
    saved directory: opening each handle would cost more than checking
    the 300-odd entries, so the record gives up, says why, and the full
    check finds the rewrite."""
    with mounted_tmpfs(tmpdir_tmp / "mnt", "64m") as mnt:
        d = mnt / "app"
        d.mkdir()
        p, r = window(procs, criu, workdir, d, "flood", 3000)
        assert re.search(r"Warn .*the change record cannot be used: more inodes changed on the filesystem than "
                         r"entries to check; %s" % FALLBACK, r.log), r.log[-3000:]
        assert RECORD not in r.log
        assert kept(r.log)[2].get(str(d / "data")) == "changed since the pre-copy"
        restores_as_frozen(criu, procs, p, d)
        assert (d / "data").read_bytes() == b"NEW\n" * 16384


def test_directory_made_again_with_its_inode_number(procs, criu, workdir, tmpdir_tmp):
    """sub, with sub/f unchanged since long before the dump, is removed
    between the passes and made again, empty, at its name; ext4 gives it
    its inode number back. The removed directory's events are dropped
    with its handle, which no longer opens, and the new one has none:
    had the record kept the pre-copy's listing of sub for the same inode
    number, sub/f would be kept and restored, though the frozen tree did
    not have it. A directory at a name that changed is walked afresh: the
    restored sub is empty."""
    d = tmpdir_tmp / "app"
    d.mkdir()
    p, r = window(procs, criu, workdir, d, "redir", prepare=subdirs)
    assert RECORD in r.log and FALLBACK not in r.log, r.log[-3000:]
    assert os.listdir(d / "sub") == []
    restores_as_frozen(criu, procs, p, d)
    assert os.listdir(d / "sub") == []
    again = kept(r.log)[2]
    assert again.get(str(d / "sub")) == "changed since the pre-copy", again


def test_saved_directory_made_again_with_its_inode_number(procs, criu, workdir, tmpdir_tmp):
    """A saved directory itself is emptied, removed and made again with
    its inode number between the passes, new.txt in it (another saved
    path, a, is the first on the filesystem: the record holds that one
    open, and its number cannot come back). Its name is in no listing of
    the pre-copy: the record looks at the names on the way to it, finds
    this one changed, and walks it afresh. Nothing of the 300 files the
    pre-copy archived is kept or restored."""
    d = tmpdir_tmp / "app"
    d.mkdir()
    (tmpdir_tmp / "a").mkdir()
    p, r = window(procs, criu, workdir, d, "reroot", saved=[tmpdir_tmp / "a"])
    assert RECORD in r.log and FALLBACK not in r.log, r.log[-3000:]
    assert os.listdir(d) == ["new.txt"]
    restores_as_frozen(criu, procs, p, d)
    assert os.listdir(d) == ["new.txt"]
    k, walked, again, _ = kept(r.log)
    # a (its unchanged directory member) only
    assert k == 1 and str(tmpdir_tmp / "a") not in again and str(d / "new.txt") in again, (k, walked, again)
    assert "a name on the way to %s changed since the pre-copy: walked afresh" % d in r.log, r.log[-3000:]


def test_filesystem_marked_is_the_one_opened(procs, criu, workdir, tmpdir_tmp):
    """The saved app is a/d/app on a tmpfs A; a/dlink is an absolute symlink
    to the same names on another tmpfs B. Between the record's open of the
    saved path and its fanotify mark (fanotify_mark held one second on
    each side by strace), a/d and a/dlink are swapped, and swapped back
    once the mark is placed. A mark placed by name would land on B while
    the record took A's device from the fd: A's changes between the passes
    would be no event, and the stale pre-copy kept (the old data
    restored). The mark is placed on the fd opened beneath the tree's
    root: A's events come, and the restore gives the new data."""
    strace = shutil.which("strace")
    assert strace, "strace is needed to hold fanotify_mark()"
    with mounted_tmpfs(tmpdir_tmp / "A", "64m") as a, mounted_tmpfs(tmpdir_tmp / "B", "16m") as b:
        d = a / "d/app"
        d.mkdir(parents=True)
        (b / "d/app").mkdir(parents=True)
        (b / "d/app/data").write_bytes(b"B's\n")
        os.symlink(str(b / "d"), a / "dlink")

        def exchange():
            os.rename(a / "d", a / "tmp")
            os.rename(a / "dlink", a / "d")
            os.rename(a / "tmp", a / "dlink")

        def in_mark(pid):
            return Path("/proc/%d/syscall" % pid).read_text().split()[0] == str(SYSCALLS["fanotify_mark"])

        t, swaps = swap_while_held(criu, exchange, in_mark)
        env, ack, steps = between_the_passes(workdir)
        p = start_app(procs, "window.py", d, workdir / "window.ready", ack, "swap")
        env["CHURN_PID"] = str(p.pid)
        wait_ctimes_past(d)
        t.start()
        wrapper = [strace, "-o", "/dev/null", "-e", "trace=fanotify_mark",
                   "-e", "inject=fanotify_mark:delay_enter=1000000:delay_exit=1000000"]
        r = criu.run("dump", "-t", str(p.pid), "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress",
                     "none", env=env, wrapper=wrapper, step="dump of pid %d under strace" % p.pid)
        t.join()
        assert r.returncode == 0, r
        p.wait(timeout=10)
        assert swaps == ["swapped", "back"] and steps.read_text().split() == ["done"], (swaps, steps.read_text())
        assert RECORD in r.log, r.log[-3000:]
        assert (d / "data").read_bytes() == b"NEW\n" * 16384
        restores_as_frozen(criu, procs, p, d)
        assert (d / "data").read_bytes() == b"NEW\n" * 16384
        assert os.readlink(d / "link") == "/etc/shadow"


def test_xattrs_of_a_walked_file_are_its_own(procs, criu, workdir, tmpdir_tmp):
    """The pre-copy reads the xattrs of a walked file while the tree runs.
    app/sub/e has none; app/sublink is an absolute symlink to a host
    directory whose e has user.evil. While the pre-copy reads e's xattrs
    (its first syscall on e's path held one second by strace, and the
    second getxattr too), app/sub and app/sublink are swapped, and back
    before tar reads anything. Read by name, they would be the host
    file's, kept in e's manifest entry with its unchanged member: restore
    refuses the file it put there. Read through an O_PATH fd checked
    against the walk's inode, the swapped name is not e: e is archived
    again while frozen, and restores without user.evil."""
    strace = shutil.which("strace")
    assert strace, "strace is needed to hold the pre-copy's syscalls"
    host = tmpdir_tmp / "host"
    host.mkdir()
    (host / "e").write_bytes(b"host\n")
    os.setxattr(host / "e", "user.evil", b"from the host")
    d = tmpdir_tmp / "app"
    (d / "sub").mkdir(parents=True)
    (d / "sub/e").write_bytes(b"own\n")
    os.symlink(str(host), d / "sublink")
    wait_ctimes_past(d)
    task = procs.start(["sleep", "1000"])
    e = "/proc/%d/root%s" % (task.pid, d / "sub/e")

    def exchange():
        os.rename(d / "sub", d / "tmp")
        os.rename(d / "sublink", d / "sub")
        os.rename(d / "tmp", d / "sublink")

    t, swaps = swap_while_held(criu, exchange,
                               lambda pid: held_in(pid, (SYSCALLS["llistxattr"], SYSCALLS["openat"]), e))
    t.start()
    # openat: the O_PATH open; llistxattr, then the second lgetxattr: by name
    wrapper = [strace, "-o", "/dev/null", "-P", e, "-e", "trace=openat,llistxattr,lgetxattr",
               "-e", "inject=openat:delay_enter=1000000:delay_exit=1000000:when=1",
               "-e", "inject=llistxattr:delay_enter=1000000:when=1",
               "-e", "inject=lgetxattr:delay_exit=1000000:when=2"]
    r = criu.run("dump", "-t", str(task.pid), "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress",
                 "none", wrapper=wrapper, step="dump of pid %d under strace" % task.pid)
    t.join()
    assert r.returncode == 0, r
    task.wait(timeout=10)
    assert swaps == ["swapped", "back"], swaps
    frozen = os.listxattr(d / "sub/e"), (d / "sub/e").read_bytes()
    assert frozen == ([], b"own\n")
    shutil.rmtree(d)
    r = criu.restore("--leave-stopped")
    assert r.returncode == 0, r
    procs.track(task.pid)
    assert (os.listxattr(d / "sub/e"), (d / "sub/e").read_bytes()) == frozen
    kill_tree(task.pid)
    wait_gone(task.pid)
