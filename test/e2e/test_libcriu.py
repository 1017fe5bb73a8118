"""--tmp-file through libcriu: criu_add_tmp_file() with criu_dump()/criu_restore().

apps/libcriu_tmpfile.c is compiled here against the tree's libcriu
(see criutree.py), the way a runtime such as crun links it.
"""
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import CRIU, APPS, TREE, alive, archive_member, check_back, has_archive, make_files, run_bounded
from criutree import build_libcriu_program


@pytest.fixture(scope="module")
def program():
    base = Path("/var/tmp/criu-tmpfile-e2e")
    base.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="libcriu.", dir=base))
    yield build_libcriu_program(APPS / "libcriu_tmpfile.c", d)
    shutil.rmtree(d, ignore_errors=True)


def run(program, action, *args):
    """libcriu_tmpfile ACTION ARGS: criu_dump() or criu_restore() of a
    "criu swrk" that libcriu forks; the log is IMAGES/ACTION.log."""
    images = Path(args[1] if action == "dump" else args[0])
    return run_bounded([str(program), CRIU, action] + [str(a) for a in args],
                       "libcriu_tmpfile %s" % action, "libcriu criu_%s()" % action,
                       log=images / ("%s.log" % action))


def test_libcriu_dump_restore_brings_the_dir_back(program, app, criu):
    criu.images.mkdir()
    app.start()
    before = app.tick()
    r = run(program, "dump", app.pid, criu.images, app.dir)
    assert r.returncode == 0, (r.stderr, (criu.images / "dump.log").read_text())
    assert r.stdout == "dumped\n"
    app.wait_dead()
    assert archive_member(criu.images, app.dir / "app.conf") == b"mode=fast\n"
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)

    r = run(program, "restore", criu.images)
    assert r.returncode == 0, (r.stderr, (criu.images / "restore.log").read_text())
    assert r.stdout == "restored %d\n" % app.pid
    check_back(app, before, log)


def test_libcriu_precopy(program, app, criu):
    """criu_set_tmp_file_precopy(true): the pre-copy runs, what did not
    change is kept from it, and the directory comes back."""
    criu.images.mkdir()
    app.start()
    before = app.tick()
    r = run_bounded([str(program), CRIU, "dump", str(app.pid), str(criu.images), str(app.dir)], "libcriu_tmpfile dump",
                    "libcriu criu_dump() with criu_set_tmp_file_precopy()", log=criu.images / "dump.log",
                    env=dict(os.environ, TMP_FILE_PRECOPY="1"))
    dump_log = (criu.images / "dump.log").read_text()
    assert r.returncode == 0, (r.stderr, dump_log)
    assert "Pre-copy: archiving 4 entries while the tree runs" in dump_log
    assert re.search(r"Pre-copy: \d of 4 entries kept", dump_log)
    app.wait_dead()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    r = run(program, "restore", criu.images)
    assert r.returncode == 0, (r.stderr, (criu.images / "restore.log").read_text())
    check_back(app, before, log)


def test_libcriu_several_calls(program, app, criu, tmpdir_tmp):
    """Every criu_add_tmp_file() call adds a path."""
    other = tmpdir_tmp / "other.txt"
    other.write_text("other\n")
    criu.images.mkdir()
    app.start()
    r = run(program, "dump", app.pid, criu.images, app.dir, other)
    assert r.returncode == 0, (r.stderr, (criu.images / "dump.log").read_text())
    app.wait_dead()
    shutil.rmtree(app.dir)
    other.unlink()

    r = run(program, "restore", criu.images)
    assert r.returncode == 0, (r.stderr, (criu.images / "restore.log").read_text())
    app.restored()
    assert other.read_text() == "other\n"
    assert app.tick()["conf"] == "mode=fast\n"


def test_libcriu_relative_path_fails_the_dump(program, app, criu):
    criu.images.mkdir()
    app.start()
    r = run(program, "dump", app.pid, criu.images, "relative/path")
    assert r.returncode == 1
    assert "criu_dump returned" in r.stderr
    assert "--tmp-file relative/path: the path must be absolute" in \
        (criu.images / "dump.log").read_text()
    # What a runtime using libcriu (crun) can show its user: criu_get_last_errmsg()
    assert "tmp-files: --tmp-file relative/path: the path must be absolute" in r.stderr, r.stderr
    assert alive(app.pid)
    app.tick()
    assert not has_archive(criu.images)


def test_libcriu_10000_paths(program, app, criu, tmpdir_tmp):
    """A request bigger than the default socket buffer still goes through."""
    many = tmpdir_tmp / "many"
    paths = make_files(many, 10000)
    criu.images.mkdir()
    app.start()
    r = run(program, "dump", app.pid, criu.images, app.dir, *paths)
    assert r.returncode == 0, (r.stderr, (criu.images / "dump.log").read_text()[-3000:])
    app.wait_dead()
    shutil.rmtree(many)
    shutil.rmtree(app.dir)

    r = run(program, "restore", criu.images)
    assert r.returncode == 0, (r.stderr, (criu.images / "restore.log").read_text()[-3000:])
    app.restored()
    assert app.tick()["conf"] == "mode=fast\n"
    assert len(os.listdir(many)) == 10000
    assert (many / "f09999").read_text() == "9999\n"


def test_libcriu_request_bigger_than_the_socket_buffer(tmpdir_tmp):
    """The first patch of the series on its own (lib/c: make room for a big
    request): a request of upstream fields only, 10,000 irmap scan paths
    (about 600 KB), is more than net.core.wmem_default (212992 bytes):
    libcriu raises SO_SNDBUF, and criu_check() gets its answer instead of
    -ECOMM (EMSGSIZE on write)."""
    with open("/proc/sys/net/core/wmem_default") as f:
        assert int(f.read()) < 600 << 10
    exe = build_libcriu_program(APPS / "libcriu_bigreq.c", tmpdir_tmp / "bigreq")
    r = run_bounded([str(exe), CRIU, "10000"], "libcriu_bigreq", "criu_check() with 10,000 irmap paths")
    assert "Can't send request" not in r.stderr, r.stderr
    assert "criu_check: 0\n" in r.stdout, (r.stdout, r.stderr)
    assert r.returncode == 0


def test_upstream_libcriu_test_tmp_file(workdir):
    """test/others/libcriu/test_tmp_file.c, the test the series adds to
    upstream's libcriu tests (built as upstream's Makefile builds them, with
    its lib.c): every setter, global and criu_local_, reaches criu."""
    src = TREE / "test/others/libcriu"
    exe = build_libcriu_program(src / "test_tmp_file.c", workdir / "bin", extra=[src / "lib.c"],
                                warnings=("-Werror",))
    out = workdir / "out"
    out.mkdir()
    try:
        r = run_bounded([str(exe), CRIU, str(out)], "test_tmp_file", "upstream's libcriu test_tmp_file",
                        log=out / "dump.log")
        shm = sorted(glob.glob("/dev/shm/criu-libcriu-test_tmp_file.*"))
    finally:
        for f in glob.glob("/dev/shm/criu-libcriu-test_tmp_file.*"):
            os.unlink(f)
    logs = {p.name: p.read_text() for p in out.glob("*.log")}
    assert r.returncode == 0, (r.stdout, r.stderr, logs.get("restore.log", "")[-3000:])
    assert shm == [], "the test left its /dev/shm file"
    # The two refused dumps were refused for the reason the setters gave
    assert "--tmp-file-compress lz4: must be gzip, zstd or none" in logs["dump-lz4.log"]
    assert re.search(r"--tmp-file-auto: the files to save take \d+ bytes, over --tmp-file-limit 1\b",
                     logs["dump-limit.log"])
    # The good one: the automatic mode, the pre-copy, the named directory
    dump = logs["dump.log"]
    assert re.search(r"--tmp-file-auto: saving /dev/shm/criu-libcriu-test_tmp_file\.\d+ \(20 bytes\)", dump)
    assert "Pre-copy: archiving 2 entries while the tree runs" in dump
    assert "--- Restore ---" in r.stdout and "Restore returned pid" in r.stdout


def test_libcriu_optional_path(program, app, criu, tmpdir_tmp):
    """criu_add_tmp_file_optional(): a path the tree does not have is
    skipped with a warning, one it has is saved."""
    criu.images.mkdir()
    app.start()
    missing = tmpdir_tmp / "not-there"
    r = run(program, "dump", app.pid, criu.images, "?" + str(missing), "?" + str(app.dir))
    assert r.returncode == 0, r.stderr
    log = (criu.images / "dump.log").read_text()
    assert "--tmp-file-optional %s: the dumped tree has no such path, it is not saved" % missing in log
    app.wait_dead()
    before = {p.name: p.read_bytes() for p in app.dir.iterdir()}
    shutil.rmtree(app.dir)
    r = run(program, "restore", criu.images)
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in app.dir.iterdir()} == before
    app.restored()

