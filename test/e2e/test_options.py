"""The --tmp-file options, wherever they come from.

The command line, a --config file, RPC fields, the RPC config file (what
runc passes in criu_opts.config_file: /etc/criu/runc.conf or the
org.criu.config annotation) and /etc/criu/default.conf, which every criu
run on the host reads (LXC and Podman with crun reach criu only through
it; issue 23). A bad value fails the dump with the option and the value
named, in the log and in cr_errmsg (over RPC the config file is parsed
before the log is set up), and the tree keeps running; which source wins;
"tmp-file-optional PATH" in default.conf saves PATH of the trees that
have it and dumps the others with a warning, "tmp-file PATH" fails them;
a dump refused before the freeze logs its reason once. --help and the man
page.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (BAD_PATHS, CRIU, TREE, alive, archive, archive_names, check_back, dump_and_wipe, has_archive,
                      kill_tree, log_of, mounted_tmpfs, run_bounded, wait_gone, wipe_after_dump)
from criutree import request, swrk_call


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
    names = archive_names(criu.images, "r:gz")
    assert str(extra / "only-in-config").lstrip("/") in names
    assert str(app.dir / "state").lstrip("/") in names

    log = wipe_after_dump(app)
    shutil.rmtree(extra)
    resp, status = swrk_call(request("RESTORE", "restore.log"), criu.images)
    assert resp.success, log_of(criu.images, "restore.log")[-3000:]
    check_back(app, before, log)
    assert (extra / "only-in-config").read_text() == "from the config file\n"


def test_rpc_field_wins_over_the_default_config_file(procs, criu, workdir, tmpdir_tmp, default_conf):
    """criu swrk reads /etc/criu/default.conf when it starts; a request's
    tmp_file_limit field comes later and wins over its tmp-file-limit."""
    from conftest import Holder
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


def test_config_file_form(app, criu, workdir):
    conf = workdir / "criu.conf"
    conf.write_text("tmp-file %s\n" % app.dir)
    before, state, log = dump_and_wipe(app, criu, "--config", str(conf))
    assert str(app.dir).lstrip("/") + "/state" in archive_names(criu.images)
    r = criu.restore()
    assert r.returncode == 0, r
    check_back(app, before, log, state)


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_bad_paths_refused_at_parsing(app, criu, path, message):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", path)
    assert r.returncode != 0
    assert message in r.output, r
    assert alive(app.pid)
    app.tick()


def test_help_and_man_page_mention_the_option():
    out = run_bounded([CRIU, "--help"], "criu --help", "criu --help").stdout
    assert "--tmp-file PATH" in out
    for opt in ("--tmp-file-compress gzip|zstd|none", "--tmp-file-auto", "--tmp-file-limit size"):
        assert opt in out
    man = (TREE / "Documentation/criu.txt").read_text()
    for opt in ("*--tmp-file* 'path'::", "*--tmp-file-compress* *gzip*|*zstd*|*none*::",
                "*--tmp-file-auto*::", "*--tmp-file-limit* 'size'::"):
        assert opt in man


def test_bad_compression_refused(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-compress", "lz4")
    assert r.returncode != 0
    assert "--tmp-file-compress lz4: must be gzip, zstd or none" in r.output, r
    assert alive(app.pid)


def test_optional_path_in_default_conf(default_conf, procs, criu, tmpdir_tmp):
    data = Path(tmpdir_tmp) / "data"
    default_conf.write_text("tmp-file-optional %s\n" % data)

    # A tree that has the path: saved, and back after a wipe
    data.mkdir()
    (data / "state").write_text("kept across the restore\n")
    with_data = procs.start(["sleep", "1000"])
    r = criu.dump(with_data.pid, images=criu.images / "with")
    assert r.returncode == 0, r
    with_data.wait(timeout=10)
    wait_gone(with_data.pid)
    shutil.rmtree(data)
    r = criu.restore(images=criu.images / "with")
    assert r.returncode == 0, r
    procs.track(with_data.pid)
    assert (data / "state").read_text() == "kept across the restore\n"
    kill_tree(with_data.pid)
    wait_gone(with_data.pid)

    # A tree that does not: dumped without it, and the log says so
    shutil.rmtree(data)
    without = procs.start(["sleep", "1000"])
    r = criu.dump(without.pid, images=criu.images / "without")
    assert r.returncode == 0, r
    assert "--tmp-file-optional %s: the dumped tree has no such path, it is not saved" % data in r.log
    without.wait(timeout=10)
    wait_gone(without.pid)
    r = criu.restore(images=criu.images / "without")
    assert r.returncode == 0, r
    procs.track(without.pid)
    assert not data.exists()
    kill_tree(without.pid)

    # criu check reads the same file and is not disturbed by the line
    r = run_bounded([CRIU, "check"], "criu check", "criu check with a shared default.conf")
    assert r.returncode == 0, r.stdout + r.stderr


def test_required_path_in_default_conf_fails_other_trees(default_conf, procs, criu, tmpdir_tmp):
    """The reason for the option: with "tmp-file", a tree without the path
    fails, naming it, and keeps running."""
    data = Path(tmpdir_tmp) / "data"
    default_conf.write_text("tmp-file %s\n" % data)
    tree = procs.start(["sleep", "1000"])
    r = criu.dump(tree.pid)
    assert r.returncode != 0
    assert "--tmp-file %s: can't save it: No such file or directory" % data in r.log, r
    assert alive(tree.pid)


def test_refused_dump_logs_one_error(procs, criu, tmpdir_tmp):
    """A dump refused before the tree is seized: the reason, then "Dumping
    FAILED", and no error about detaching from a task never seized."""
    tree = procs.start(["sleep", "1000"])
    missing = Path(tmpdir_tmp) / "missing"
    r = criu.dump(tree.pid, "--tmp-file", str(missing))
    assert r.returncode != 0
    errors = [ln for ln in r.log.splitlines() if "Error (" in ln and "RLIMIT_NOFILE" not in ln]
    assert len(errors) == 2, errors
    assert "--tmp-file %s: can't save it" % missing in errors[0]
    assert "Dumping FAILED" in errors[1]
    assert "Unable to detach" not in r.log
    assert alive(tree.pid)
    assert os.readlink("/proc/%d/exe" % tree.pid).endswith("sleep")
