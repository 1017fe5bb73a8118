"""--tmp-file: compression choice, fault injection, hostile images."""
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import ARCHIVE, MANIFEST, TREE, alive, kill_tree, mounted_tmpfs, rewrite_archive, snapshot, wait_gone


def crit_env():
    """crit and pycriu of the tree under test, for /usr/bin/python3 -m crit."""
    return dict(os.environ, PYTHONPATH="%s:%s" % (TREE / "crit", TREE / "lib"))


@pytest.mark.parametrize("compress, magic", [
    ("gzip", b"\x1f\x8b"), ("zstd", b"\x28\xb5\x2f\xfd"), ("none", None)])
def test_compression_choice(app, criu, compress, magic):
    with open(app.dir / "text", "w") as f:
        f.write("some compressible text line\n" * 20000)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-compress", compress)
    assert r.returncode == 0, r
    app.wait_dead()
    head = (criu.images / ARCHIVE).read_bytes()[:4]
    if magic:
        assert head.startswith(magic)
    else:
        with tarfile.open(criu.images / ARCHIVE, "r:") as t:
            assert str(app.dir / "text").lstrip("/") in t.getnames()
    text = (app.dir / "text").read_text()
    shutil.rmtree(app.dir)

    # Restore needs no option: the choice is read from the images.
    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()
    assert app.tick()["ticks"] == before["ticks"] + 1
    assert (app.dir / "text").read_text() == text


def test_bad_compression_refused(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-compress", "lz4")
    assert r.returncode != 0
    assert "--tmp-file-compress lz4: must be gzip, zstd or none" in r.output, r
    assert alive(app.pid)


def test_fault_in_archive_step_resumes_the_tree(app, criu):
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=dict(os.environ, CRIU_FAULT="7"))
    assert r.returncode != 0
    assert "Fault injected: the archive step fails" in r.output, r
    assert alive(app.pid)
    assert app.tick()["ticks"] == before["ticks"] + 1
    assert not (criu.images / ARCHIVE).exists()
    assert not (criu.images / "inventory.img").exists()


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


def test_member_outside_saved_paths_is_refused(app, criu, tmpdir_tmp):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    victim = tmpdir_tmp / "victim"
    victim.write_text("original\n")
    def plant(members):
        m = tarfile.TarInfo(str(victim).lstrip("/"))
        m.size = 6
        return members + [(m, b"owned\n")]

    rewrite_archive(criu.images, plant)
    # Something to restore: with every entry in place the archive is not read
    (app.dir / "app.conf").write_text("mode=changed\n")
    before = snapshot(app.dir)

    r = criu.restore()
    assert r.returncode != 0
    # A member the manifest does not have: refused from its header, before its data reaches tar
    assert "victim, which is not in its manifest: refusing to extract it" in r.output, r
    assert victim.read_text() == "original\n"
    assert snapshot(app.dir) == before


def test_symlink_on_the_target_is_not_followed(app, criu, tmpdir_tmp):
    """/tmp/x made a symlink elsewhere after dump: nothing is written through it."""
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    elsewhere = tmpdir_tmp / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(app.dir)
    app.dir.symlink_to(elsewhere)

    r = criu.restore()
    assert r.returncode != 0
    assert "Can't restore directory %s: something else is in its place" % app.dir in r.output, r
    assert os.listdir(elsewhere) == []


def test_symlink_on_a_parent_is_not_followed(procs, criu, tmpdir_tmp, workdir):
    from conftest import App
    app = App(procs, tmpdir_tmp / "parent" / "app", workdir / "report.json")
    app.prepare()
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    elsewhere = tmpdir_tmp / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(tmpdir_tmp / "parent")
    (tmpdir_tmp / "parent").symlink_to(elsewhere)

    r = criu.restore()
    assert r.returncode != 0
    assert "Can't restore %s: %s is not a directory" % (app.dir, tmpdir_tmp / "parent") in r.output, r
    assert os.listdir(elsewhere) == []


def test_crit_shows_the_manifest(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file", str(app.dir / "state"))
    assert r.returncode == 0, r
    env = crit_env()
    out = subprocess.run(["/usr/bin/python3", "-m", "crit", "show", str(criu.images / MANIFEST)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    img = json.loads(out.stdout)
    assert img["magic"] == "TMP_FILES_MANIFEST"
    m = img["entries"][0]
    # The state file is saved with its directory: one path.
    assert m["paths"] == [str(app.dir)] and m["compression"] == "gzip"
    # rewritten after compression as a whole, through a directory of its own
    assert sorted(p.name for p in criu.images.iterdir() if "tmp-files" in p.name) == [MANIFEST, ARCHIVE]
    entries = {e["path"]: e for e in m["entries"]}
    assert sorted(entries) == [str(app.dir)] + [str(app.dir / n) for n in ("app.conf", "app.log", "state")]
    st = os.stat(app.dir / "app.conf")
    conf = entries[str(app.dir / "app.conf")]
    assert conf["type"] == "REG" and conf["size"] == st.st_size == 10
    assert conf["mode"] == st.st_mode & 0o7777 and conf["uid"] == 0
    assert conf["mtime_sec"] * 10**9 + conf["mtime_nsec"] == st.st_mtime_ns
    assert entries[str(app.dir)]["type"] == "DIR"


def grow(members):
    for m, data in members:
        if m.name.endswith("app.conf"):
            data = data + b"evil=1\n"
            m.size = len(data)
        yield m, data


def setuid(members):
    for m, data in members:
        if m.name.endswith("app.conf"):
            m.mode |= 0o4000
        yield m, data


def extra(members):
    yield from members
    m, data = next((m, d) for m, d in members if m.name.endswith("app.conf"))
    m2 = tarfile.TarInfo(m.name.replace("app.conf", "planted"))
    m2.size, m2.mtime = len(data), m.mtime
    yield m2, data


def missing(members):
    return [(m, d) for m, d in members if not m.name.endswith("app.conf")]


def renamed(members):
    """As many members and bytes as the manifest says: caught once extracted."""
    for m, data in members:
        if m.name.endswith("app.conf"):
            m.name = m.name.replace("app.conf", "planted")
        yield m, data


def resized(members):
    """The same total, one file longer and another shorter."""
    for m, data in members:
        if m.name.endswith("app.conf"):
            data = data + b"evil=1\n"
        elif m.name.endswith("/state"):
            data = data[:-7]
        m.size = len(data) if data is not None else m.size
        yield m, data


@pytest.mark.parametrize("change, message", [
    (grow, "refusing to extract it"),
    (setuid, "does not match its manifest at {dir}/app.conf (mode)"),
    (extra, "refusing to extract it"),
    (missing, "lacks {dir}/app.conf, which is in its manifest"),
    (renamed, "has {dir}/planted, which is not in its manifest"),
    (resized, "that does not match its manifest (size)"),
])
def test_archive_not_matching_its_manifest_is_refused(app, criu, change, message):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    rewrite_archive(criu.images, change)
    shutil.rmtree(app.dir)

    r = criu.restore()
    assert r.returncode != 0
    assert message.format(dir=app.dir) in r.output, r
    assert "refusing to restore" in r.output or "refusing to extract it" in r.output
    assert not app.dir.exists()
    wait_gone(app.pid)


def test_crit_explains_the_raw_archive(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--leave-running")
    assert r.returncode == 0, r
    env = crit_env()
    archive = str(criu.images / ARCHIVE)
    out = subprocess.run(["/usr/bin/python3", "-m", "crit", "decode", "-i", archive],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "is the tar archive of the files saved with --tmp-file" in out.stderr
    assert "Unknown magic" not in out.stderr
    listing = subprocess.run(["tar", "-tvf", archive], capture_output=True, text=True, check=True)
    assert str(app.dir / "state").lstrip("/") in listing.stdout


def test_compression_failing_after_the_dump_keeps_the_archive(app, criu, workdir):
    """Compression runs after the tree is resumed: its failure loses nothing."""
    bindir = workdir / "bin"
    bindir.mkdir()
    # It compresses nothing (criu's check before the freeze), and fails on the archive.
    (bindir / "gzip").write_text('#!/bin/sh\n[ "$(head -c 1 | wc -c)" = 0 ] && exit 0\nexit 1\n')
    (bindir / "gzip").chmod(0o755)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir),
                  env=dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"])))
    assert r.returncode == 0, r
    assert "The --tmp-file archive tmp-files.tar.img stays uncompressed" in r.output
    with tarfile.open(criu.images / ARCHIVE, "r:") as t:  # plain tar
        assert str(app.dir / "state").lstrip("/") in t.getnames()
    app.wait_dead()
    shutil.rmtree(app.dir)
    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()
    assert app.tick()["ticks"] == before["ticks"] + 1


def test_restore_into_nearly_full_tmpfs_replaces_nothing(procs, criu, workdir, tmpdir_tmp):
    from conftest import App
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
        # tar runs out of space there, before anything is placed.
        assert "No space left on device" in r.output, r
        assert "no file was restored" in r.output
        assert snapshot(mnt) == before
        wait_gone(app.pid)


def content_xxh64(path):
    """The manifest's checksum, recomputed from its definition in
    images/tmp-file.proto with the reference XXH64 (python3-xxhash)."""
    import xxhash

    def chain(a, b):
        return xxhash.xxh64(a.to_bytes(8, "little") + b.to_bytes(8, "little")).intdigest()

    data = path.read_bytes()
    acc = 0
    for off in range(0, len(data), 64 << 10):
        block = data[off:off + (64 << 10)]
        if block.count(0) != len(block):
            acc = chain(chain(acc, off), xxhash.xxh64(block).intdigest())
    return chain(acc, len(data))


def test_manifest_checksums_are_xxh64(app, criu):
    """Checked against the reference XXH64: sizes around the 32- and
    64 KiB-block edges, a file with a hole, all zeros, empty."""
    files = {"empty": b"", "tiny": b"abc", "odd": os.urandom(37), "edge": os.urandom(64 << 10),
             "over": os.urandom((64 << 10) + 13), "zeros": bytes(200000)}
    for name, data in files.items():
        (app.dir / name).write_bytes(data)
    with open(app.dir / "holey", "wb") as f:
        f.write(b"start")
        f.seek(5 << 20)
        f.write(b"end")
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--leave-running")
    assert r.returncode == 0, r
    env = crit_env()
    out = subprocess.run(["/usr/bin/python3", "-m", "crit", "show", str(criu.images / MANIFEST)],
                         capture_output=True, text=True, env=env, check=True)
    entries = {e["path"]: e for e in json.loads(out.stdout)["entries"][0]["entries"]}
    for name in list(files) + ["holey", "app.conf", "state"]:
        e = entries[str(app.dir / name)]
        assert int(e["content_xxh64"]) == content_xxh64(app.dir / name), name


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
