"""--tmp-file: saved at dump, put back before the tree is restored."""
import os
import shutil
import signal
import socket
import subprocess
import tarfile

import pytest

from conftest import (ARCHIVE, BAD_PATHS, CRIU, CRIU_OUTSIDE_TMP, MANIFEST, TREE, alive, check_back,
                      run_bounded, snapshot, wait_gone)


def members(images):
    with tarfile.open(images / ARCHIVE) as t:
        return sorted(m.name for m in t.getmembers())


def dump_and_wipe(app, criu, *args):
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, *args)
    assert r.returncode == 0, r
    app.wait_dead()
    state = (app.dir / "state").read_bytes()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    return before, state, log


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


def test_several_paths_dir_and_file_inside(app, criu, tmpdir_tmp):
    other = tmpdir_tmp / "other.txt"
    other.write_text("other\n")
    before, state, log = dump_and_wipe(
        app, criu, "--tmp-file", str(app.dir), "--tmp-file", str(app.dir / "app.conf"),
        "--tmp-file", str(app.dir) + "/", "--tmp-file", "/" + str(other) + "//")
    names = members(criu.images)
    rel = str(app.dir).lstrip("/")
    assert names == sorted([rel, rel + "/app.conf", rel + "/app.log", rel + "/state",
                            str(other).lstrip("/")])
    other.unlink()

    r = criu.restore()
    assert r.returncode == 0, r
    assert other.read_text() == "other\n"
    check_back(app, before, log, state)


def test_config_file_form(app, criu, workdir):
    conf = workdir / "criu.conf"
    conf.write_text("tmp-file %s\n" % app.dir)
    before, state, log = dump_and_wipe(app, criu, "--config", str(conf))
    assert str(app.dir).lstrip("/") + "/state" in members(criu.images)
    r = criu.restore()
    assert r.returncode == 0, r
    check_back(app, before, log, state)


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


def test_no_new_image_without_option(app, criu):
    app.start()
    r = criu.dump(app.pid)
    assert r.returncode == 0, r
    assert not (criu.images / ARCHIVE).exists()
    assert not (criu.images / MANIFEST).exists()
    assert "tmp-files" not in r.log


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_bad_paths_refused_at_parsing(app, criu, path, message):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", path)
    assert r.returncode != 0
    assert message in r.output, r
    assert alive(app.pid)
    app.tick()


def test_missing_path(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir / "missing"))
    assert r.returncode != 0
    assert "--tmp-file %s: can't save it: No such file or directory" % (app.dir / "missing") in r.output, r
    assert alive(app.pid)
    app.tick()
    assert not (criu.images / ARCHIVE).exists()


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_file_refused(app, criu, kind):
    path = app.dir / kind
    if kind == "fifo":
        os.mkfifo(path)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(path))
    assert r.returncode != 0
    assert "--tmp-file %s: not a regular file, a directory or a symlink" % path in r.output, r
    assert alive(app.pid)
    app.tick()


def test_no_tar_in_path(app, criu, workdir):
    bindir = workdir / "bin"
    bindir.mkdir()
    env = dict(os.environ, PATH=str(bindir))
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=env)
    assert r.returncode != 0
    assert "--tmp-file needs GNU tar" in r.output, r
    assert alive(app.pid)
    app.tick()

    # A tar that is not GNU tar is refused as well.
    (bindir / "tar").write_text("#!/bin/sh\necho 'tar (busybox) 1.36'\n")
    (bindir / "tar").chmod(0o755)
    env["PATH"] = "%s:/usr/bin:/bin" % bindir
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=env)
    assert r.returncode != 0
    assert "tar in PATH is not GNU tar" in r.output, r
    assert alive(app.pid)
    app.tick()


def test_busybox_gzip(app, criu, workdir):
    """Alpine's gzip is busybox's, whose --version fails: the dump takes it
    (it is checked by compressing nothing), compresses with it, and the
    restore, where tar calls "gzip -d", decompresses with it."""
    bindir = workdir / "bin"
    bindir.mkdir()
    os.symlink("/bin/busybox", bindir / "gzip")  # busybox runs the applet named by argv[0]
    assert subprocess.run([bindir / "gzip", "--version"], capture_output=True).returncode != 0
    env = dict(os.environ, PATH="%s:/usr/bin:/bin" % bindir)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=env)
    assert r.returncode == 0, r
    with open(criu.images / ARCHIVE, "rb") as f:
        assert f.read(2) == b"\x1f\x8b", "the archive is not gzip-compressed"
    app.wait_dead()
    state = (app.dir / "state").read_bytes()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    r = criu.restore(env=env)
    assert r.returncode == 0, r
    check_back(app, before, log, state)


def test_full_images_dir(app, criu, workdir):
    """tar fails while the tree is frozen: the dump fails, the tree runs on."""
    small = workdir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)], check=True)
    try:
        big = app.dir / "big"
        with open(big, "wb") as f:
            f.write(os.urandom(48 << 20))
        app.start()
        before = app.tick()
        r = criu.dump(app.pid, "--tmp-file", str(app.dir), images=small / "img")
        assert r.returncode != 0
        assert "Can't archive the --tmp-file paths" in r.output, r
        assert alive(app.pid)
        after = app.tick()
        assert after["ticks"] == before["ticks"] + 1
        assert not (small / "img" / ARCHIVE).exists()
    finally:
        subprocess.run(["umount", "-l", str(small)])


def damage_truncate(path):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def damage_flip(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 16):
        data[i] ^= 0xff
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip])
def test_damaged_archive_fails_restore_and_changes_nothing(app, criu, damage):
    with open(app.dir / "bulk", "wb") as f:
        f.write(os.urandom(256 << 10))
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    damage(criu.images / ARCHIVE)

    # What is on disk now must survive the failed restore untouched.
    (app.dir / "app.conf").write_text("mode=current\n")
    (app.dir / "bulk").unlink()
    before = snapshot(app.dir)

    r = criu.restore()
    assert r.returncode != 0
    # tar or gzip notice the damage, or, when a flip lands in file data that
    # gzip leaves unchecked (tar stops reading at its end marker), the
    # manifest's checksum does.
    assert ("The --tmp-file archive tmp-files.tar.img is damaged" in r.output or
            "does not match its manifest at %s (content checksum)" % (app.dir / "bulk") in r.output), r
    wait_gone(app.pid)  # the task criu forked is gone
    assert snapshot(app.dir) == before
    assert not [n for n in os.listdir("/tmp") if n.startswith(".criu-tmp-files")]


def test_help_and_man_page_mention_the_option():
    out = run_bounded([CRIU, "--help"], "criu --help", "criu --help").stdout
    assert "--tmp-file PATH" in out
    for opt in ("--tmp-file-compress gzip|zstd|none", "--tmp-file-auto", "--tmp-file-limit size"):
        assert opt in out
    man = (TREE / "Documentation/criu.txt").read_text()
    for opt in ("*--tmp-file* 'path'::", "*--tmp-file-compress* *gzip*|*zstd*|*none*::",
                "*--tmp-file-auto*::", "*--tmp-file-limit* 'size'::"):
        assert opt in man


def test_images_dir_inside_a_saved_dir_is_not_archived(app, criu, workdir):
    images = app.dir / "images"
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), images=images)
    assert r.returncode == 0, r
    app.wait_dead()
    rel = str(app.dir).lstrip("/")
    with tarfile.open(images / ARCHIVE) as t:
        names = sorted(t.getnames())
    assert names == [rel, rel + "/app.conf", rel + "/app.log", rel + "/state"]
    shutil.move(str(images), str(workdir / "moved"))
    state = (app.dir / "state").read_bytes()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    r = criu.restore(images=workdir / "moved")
    assert r.returncode == 0, r
    check_back(app, before, log, state)
