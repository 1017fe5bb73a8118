"""--tmp-file-auto: the files in use on a tmpfs are saved without naming them."""
import os
import subprocess

import pytest

from conftest import ARCHIVE, MANIFEST, Holder, alive, archive_names, mounted_tmpfs, wait_gone


@pytest.fixture
def tmpfs(workdir):
    """A tmpfs the test mounts: its content is lost when it is unmounted."""
    mnt = workdir / "tmpfs"
    with mounted_tmpfs(mnt, "64m"):
        yield mnt


def remount_empty(mnt):
    subprocess.run(["umount", str(mnt)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    assert os.listdir(mnt) == []


def names(images):
    return ["/" + n for n in archive_names(images)]


def test_only_files_in_use_on_tmpfs_are_saved(procs, criu, workdir, tmpfs):
    files = {n: tmpfs / n for n in ("open", "mapped", "child", "thread", "unlinked", "idle")}
    for n, p in files.items():
        p.write_text("%s content\n" % n)
    disk = workdir / "on-disk"
    disk.write_text("disk content\n")
    specs = ["open:%s" % files["open"], "map:%s" % files["mapped"], "child:%s" % files["child"],
             "child:%s" % files["open"], "thread:%s" % files["thread"],
             "unlinked:%s" % files["unlinked"], "open:%s" % disk]
    h = Holder(procs, workdir / "report.json", specs)
    before = h.view
    procs.track(before["child"])

    r = criu.dump(h.pid, "--tmp-file-auto")
    assert r.returncode == 0, r
    h.popen.wait()
    wait_gone(h.pid)
    wait_gone(before["child"])
    # Only the linked files in use on the tmpfs: not the disk file, not the
    # unlinked one (a ghost file), not the idle one.
    assert names(criu.images) == sorted(str(files[n]) for n in ("open", "mapped", "child", "thread"))
    for n in ("open", "mapped", "child", "thread"):
        assert "--tmp-file-auto: saving %s" % files[n] in r.log
    assert "--tmp-file-auto: saving 4 file(s) of the tree on tmpfs" in r.log

    remount_empty(tmpfs)
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(h.pid)
    assert alive(h.pid) and alive(before["child"])
    after = h.poke()
    assert after["fds"] == before["fds"]
    assert after["maps"] == before["maps"]
    assert after["child_fds"] == before["child_fds"]
    assert sorted(os.listdir(tmpfs)) == ["child", "mapped", "open", "thread"]


def test_limit_fails_the_dump_and_names_the_biggest(procs, criu, workdir, tmpfs):
    (tmpfs / "big").write_bytes(b"x" * (300 << 10))
    (tmpfs / "small").write_bytes(b"y" * 100)
    h = Holder(procs, workdir / "report.json", ["open:%s" % (tmpfs / "big"), "open:%s" % (tmpfs / "small")])
    r = criu.dump(h.pid, "--tmp-file-auto", "--tmp-file-limit", "100K")
    assert r.returncode != 0
    assert "over --tmp-file-limit 102400" in r.output, r
    out = r.output
    assert out.index("%s: 307200 bytes" % (tmpfs / "big")) < out.index("%s: 100 bytes" % (tmpfs / "small"))
    assert "Raise --tmp-file-limit, or name the files to save with --tmp-file" in out
    assert alive(h.pid)
    assert h.poke()["fds"][str(tmpfs / "big")].startswith("xxx")
    assert not (criu.images / ARCHIVE).exists()

    # Named paths are not limited.
    r = criu.dump(h.pid, "--tmp-file-auto", "--tmp-file-limit", "100K", "--tmp-file", str(tmpfs / "big"))
    assert r.returncode == 0, r
    assert names(criu.images) == [str(tmpfs / "big"), str(tmpfs / "small")]


def test_nothing_in_use_on_tmpfs_writes_no_image(procs, criu, workdir):
    disk = workdir / "on-disk"
    disk.write_text("disk\n")
    h = Holder(procs, workdir / "report.json", ["open:%s" % disk])
    # At criu's default log level (-v2), the log says why nothing was saved
    r = criu.dump(h.pid, "--tmp-file-auto", "-v2")
    assert r.returncode == 0, r
    assert not (criu.images / ARCHIVE).exists()
    assert not (criu.images / MANIFEST).exists()
    assert ("--tmp-file-auto: no regular file of the tree is open or mapped on a tmpfs: nothing to add"
            in r.log), r.log[-2000:]
