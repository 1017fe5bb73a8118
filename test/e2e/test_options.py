"""Bad values of the --tmp-file options, wherever they come from.

On the command line and in a --config file, the dump fails with the option
and the value named. Over RPC, runc (and any runtime) calls "criu swrk" and names a config file in
criu_opts.config_file (/etc/criu/runc.conf or the org.criu.config
annotation). criu parses that file after the request's own fields and
before the log is set up: a bad tmp-file value there must still fail the
request with the reason in cr_errmsg and in the log file, and the tree
must keep running.
"""
import gzip
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import CRIU, alive, check_back, mounted_tmpfs, wipe_after_dump
from criutree import archive, has_archive, request, swrk_call


def log_of(images, name):
    p = images / name
    return p.read_text(errors="replace") if p.exists() else ""


BAD_VALUES = [
    ("tmp-file", "relative/path", "--tmp-file relative/path: the path must be absolute"),
    ("tmp-file", "/tmp/a/../b", '--tmp-file /tmp/a/../b: ".." is not allowed in the path'),
    ("tmp-file-compress", "bogus", "--tmp-file-compress bogus: must be gzip, zstd or none"),
    ("tmp-file-limit", "abc", "--tmp-file-limit abc: not a size"),
    ("tmp-file-limit", "12X", "--tmp-file-limit 12X: not a size"),
    ("tmp-file-limit", "-1", "--tmp-file-limit -1: not a size"),
    ("tmp-file-limit", "+1", "--tmp-file-limit +1: not a size"),
]


@pytest.mark.parametrize("option, value, message", BAD_VALUES)
def test_bad_value_on_command_line_and_in_config(app, criu, workdir, option, value, message):
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--%s" % option, value)
    assert r.returncode != 0
    assert message in r.log, r
    conf = workdir / "criu.conf"
    conf.write_text("%s %s\n" % (option, value))
    r = criu.dump(app.pid, "--config", str(conf))
    assert r.returncode != 0
    assert message in r.log, r
    assert alive(app.pid)
    assert app.tick()["ticks"] == before["ticks"] + 1


def test_limit_with_a_space_before_the_sign(app, criu):
    """strtoull() skips blanks before its "-": " -1" was no limit at all."""
    app.start()
    r = criu.dump(app.pid, "--tmp-file-limit", " -1", "--tmp-file-auto")
    assert r.returncode != 0
    assert "--tmp-file-limit  -1: not a size" in r.log, r
    assert alive(app.pid)


@pytest.mark.parametrize("line, message", [
    ("tmp-file relative/path", "--tmp-file relative/path: the path must be absolute"),
    ("tmp-file /tmp/a/../b", '--tmp-file /tmp/a/../b: ".." is not allowed in the path'),
    ("tmp-file-compress bogus", "--tmp-file-compress bogus: must be gzip, zstd or none"),
    ("tmp-file-limit abc", "--tmp-file-limit abc: not a size"),
    ("tmp-file-limit 12X", "--tmp-file-limit 12X: not a size"),
])
def test_bad_value_in_rpc_config_file(app, criu, workdir, line, message):
    criu.images.mkdir()
    conf = workdir / "runc.conf"
    conf.write_text("%s\n" % line)
    app.start()
    before = app.tick()
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid, config_file=str(conf),
                                     tmp_files=[str(app.dir)]), criu.images)
    assert not resp.success
    # What runc shows its user: cr_errmsg, and the log file it names.
    assert resp.cr_errmsg.startswith("Error (criu/tmp-files.c:"), resp.cr_errmsg
    assert message in resp.cr_errmsg
    assert message in log_of(criu.images, "dump.log")
    assert status in (0, 1), "criu swrk died: %d" % status
    assert not has_archive(criu.images)
    # Nothing was frozen or killed.
    assert alive(app.pid)
    assert app.tick()["ticks"] == before["ticks"] + 1


def test_bad_value_in_rpc_field_reaches_cr_errmsg(app, criu):
    criu.images.mkdir()
    app.start()
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid, tmp_files=[str(app.dir)],
                                     tmp_file_compress="lz4"), criu.images)
    assert not resp.success
    assert "--tmp-file-compress lz4: must be gzip, zstd or none" in resp.cr_errmsg
    assert "--tmp-file-compress lz4" in log_of(criu.images, "dump.log")
    assert alive(app.pid)


def test_config_file_wins_over_fields_and_paths_add_up(app, criu, workdir, tmpdir_tmp):
    """The documented rule: the RPC config file is read after the request's
    fields and overrides them (as for every other option); tmp-file paths
    from both are all saved."""
    extra = tmpdir_tmp / "extra"
    extra.mkdir()
    (extra / "only-in-config").write_text("from the config file\n")
    criu.images.mkdir()
    conf = workdir / "runc.conf"
    conf.write_text("tmp-file %s\ntmp-file-compress gzip\n" % extra)
    app.start()
    before = app.tick()
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid, config_file=str(conf),
                                     tmp_files=[str(app.dir)], tmp_file_compress="none"),
                             criu.images)
    assert resp.success, log_of(criu.images, "dump.log")[-3000:]
    # gzip from the config file, not "none" from the field.
    with open(archive(criu.images), "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    with gzip.open(archive(criu.images)) as g, tarfile.open(fileobj=g) as t:
        names = set(t.getnames())
    assert str(extra / "only-in-config").lstrip("/") in names
    assert str(app.dir / "state").lstrip("/") in names

    log = wipe_after_dump(app)
    shutil.rmtree(extra)
    resp, status = swrk_call(request("RESTORE", "restore.log"), criu.images)
    assert resp.success, log_of(criu.images, "restore.log")[-3000:]
    check_back(app, before, log)
    assert (extra / "only-in-config").read_text() == "from the config file\n"


@pytest.fixture
def default_conf():
    """/etc/criu/default.conf for one test; what was there is put back."""
    conf = Path("/etc/criu/default.conf")
    made_dir = not conf.parent.exists()
    old = conf.read_bytes() if conf.exists() else None
    conf.parent.mkdir(exist_ok=True)
    yield conf
    if old is None:
        conf.unlink(missing_ok=True)
    else:
        conf.write_bytes(old)
    if made_dir:
        conf.parent.rmdir()


def test_rpc_field_wins_over_the_default_config_file(procs, criu, workdir, tmpdir_tmp, default_conf):
    """criu swrk reads /etc/criu/default.conf when it starts; a request's
    tmp_file_limit field comes later and wins over its tmp-file-limit."""
    from test_auto import Holder
    default_conf.write_text("tmp-file-limit 1K\n")
    with mounted_tmpfs(tmpdir_tmp / "mnt", "16m") as mnt:
        (mnt / "f").write_bytes(b"z" * 4096)
        h = Holder(procs, workdir / "holder.json", ["open:%s" % (mnt / "f")])
        criu.images.mkdir()
        resp, status = swrk_call(request("DUMP", "dump.log", pid=h.pid, tmp_file_auto=True,
                                         tmp_file_limit=1 << 20, leave_running=True), criu.images)
        assert resp.success, log_of(criu.images, "dump.log")[-3000:]
        assert "--tmp-file-auto: saving %s (4096 bytes)" % (mnt / "f") in log_of(criu.images, "dump.log")
        assert alive(h.pid)


def test_help_lists_the_options_as_text():
    """criu --help: the usage text with the --tmp-file options had grown past
    the 8 KiB buffer of one log message, and criu wrote the bytes after that
    buffer to stdout (an ASan build reports a global-buffer-overflow). The
    whole text, and only text, comes out."""
    r = subprocess.run([CRIU, "--help"], capture_output=True, timeout=30)
    assert r.returncode == 0, r
    out = r.stdout.decode("ascii")  # raises on a stray byte
    assert all(c.isprintable() or c in "\n\t" for c in out), out
    for option in ("--tmp-file PATH", "--tmp-file-compress", "--tmp-file-auto", "--tmp-file-limit",
                   "--tmp-file-precopy", "--action-script FILE", "-V|--version"):
        assert option in out, option
    assert out.rstrip().endswith("show version"), out[-200:]
