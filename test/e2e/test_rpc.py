"""--tmp-file over RPC (criu swrk): pycriu, raw requests, config_file.

A runtime sends criu_opts.tmp_files (field 77) or points config_file at a
file with "tmp-file PATH" lines (runc's org.criu.config annotation).
"""
import glob
import os
import shutil
import subprocess

import pytest

from conftest import (BAD_PATHS, CRIU, TREE, Holder, alive, archive, archive_member, archive_names, check_back,
                      has_archive, log_of, make_files, run_bounded, wipe_after_dump)
from criutree import pycriu, pycriu_call, request, rpc, swrk_call


def pycriu_client(images, log):
    """pycriu running our criu as "criu swrk"; images passed as our fd."""
    c = pycriu.criu()
    c.use_binary(CRIU)
    c.opts.images_dir_fd = os.open(images, os.O_DIRECTORY)
    c.opts.log_file = log
    c.opts.log_level = 4
    return c


def pycriu_request(images, log, action, **fields):
    """One pycriu request ("dump" or "restore") with these criu_opts set;
    returns the response, or the CRIUException it raised."""
    c = pycriu_client(images, log)
    for name, value in fields.items():
        if name == "tmp_files":
            c.opts.tmp_files.extend(value)
        else:
            setattr(c.opts, name, value)
    step = "pycriu %s%s" % (action, " of pid %d" % fields["pid"] if "pid" in fields else "")
    try:
        return pycriu_call(c, action, step, log=images / log)
    except pycriu.CRIUException as e:
        return e
    finally:
        os.close(c.opts.images_dir_fd)


def pycriu_ok(images, log, action, **fields):
    resp = pycriu_request(images, log, action, **fields)
    if isinstance(resp, pycriu.CRIUException):
        pytest.fail("%s\n%s" % (resp, log_of(images, log)))
    return resp


def test_pycriu_has_the_field():
    opts = rpc.criu_opts()
    assert opts.DESCRIPTOR.fields_by_name["tmp_files"].number == 77
    opts.tmp_files.append("/tmp/x")
    assert list(opts.tmp_files) == ["/tmp/x"]


def test_pycriu_dump_restore(app, criu):
    criu.images.mkdir()
    app.start()
    before = app.tick()

    pycriu_ok(criu.images, "dump.log", "dump", pid=app.pid, tmp_files=[str(app.dir)])
    assert archive_member(criu.images, app.dir / "app.conf") == b"mode=fast\n"
    log = wipe_after_dump(app)

    resp = pycriu_ok(criu.images, "restore.log", "restore")
    assert resp.pid == app.pid
    check_back(app, before, log)


def test_rpc_config_file(app, criu, workdir):
    """What runc does with org.criu.config: a config file with tmp-file."""
    criu.images.mkdir()
    conf = workdir / "runc.conf"
    conf.write_text("tmp-file %s\n" % app.dir)
    app.start()
    before = app.tick()
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid,
                                     config_file=str(conf)), criu.images)
    assert resp.success, log_of(criu.images, "dump.log")
    assert status == 0
    assert archive_member(criu.images, app.dir / "state")[:4] == b"HEAD"
    log = wipe_after_dump(app)

    resp, status = swrk_call(request("RESTORE", "restore.log"), criu.images)
    assert resp.success, log_of(criu.images, "restore.log")
    assert resp.restore.pid == app.pid
    check_back(app, before, log)


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_rpc_bad_path_is_a_failed_request(app, criu, path, message):
    criu.images.mkdir()
    app.start()
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid,
                                     tmp_files=[str(app.dir), path]), criu.images)
    # A response, not a dead service: failure with the reason in it.
    assert resp.type == rpc.DUMP
    assert not resp.success
    assert resp.cr_errmsg.startswith("Error (criu/tmp-files.c:")
    assert resp.cr_errmsg.endswith(": " + message + "\n")
    assert status in (0, 1), "criu swrk died: %d" % status
    assert message in log_of(criu.images, "dump.log")
    assert alive(app.pid)
    app.tick()
    assert not has_archive(criu.images)


def test_rpc_missing_path_is_a_failed_request(app, criu):
    criu.images.mkdir()
    app.start()
    missing = app.dir / "missing"
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid,
                                     tmp_files=[str(missing)]), criu.images)
    assert not resp.success
    # cr_errmsg is the first error of the request. Here that is the harmless
    # RLIMIT_NOFILE one that criu prints on every dump on these machines
    # (DESIGN.md 4), so the reason is looked for in the log.
    assert resp.cr_errmsg
    assert "--tmp-file %s: can't save it: No such file or directory" % missing in \
        log_of(criu.images, "dump.log")
    assert alive(app.pid)
    app.tick()


def test_rpc_10000_paths(app, criu, tmpdir_tmp):
    many = tmpdir_tmp / "many"
    paths = [str(p) for p in make_files(many, 10000)]
    criu.images.mkdir()
    app.start()
    before = app.tick()
    req = request("DUMP", "dump.log", pid=app.pid,
                  tmp_files=[str(app.dir)] + paths)
    # The request is bigger than the default socket buffer (wmem_default):
    # the client has to raise SO_SNDBUF, as for any big request.
    size = len(req.SerializeToString())
    assert size > 212992
    resp, status = swrk_call(req, criu.images, sndbuf=2 * size)
    assert resp.success, log_of(criu.images, "dump.log")[-3000:]
    names = set(archive_names(criu.images))
    assert all(p.lstrip("/") in names for p in paths)
    log = wipe_after_dump(app)
    shutil.rmtree(many)

    resp, status = swrk_call(request("RESTORE", "restore.log"), criu.images)
    assert resp.success, log_of(criu.images, "restore.log")[-3000:]
    check_back(app, before, log)
    assert sorted(os.listdir(many)) == sorted(os.path.basename(p) for p in paths)
    assert (many / "f09999").read_text() == "9999\n"


def test_rpc_compress_auto_and_limit(procs, app, criu, tmpdir_tmp):
    """criu_opts 78-80: --tmp-file-compress, --tmp-file-auto, --tmp-file-limit."""
    fields = rpc.criu_opts.DESCRIPTOR.fields_by_name
    assert [fields[n].number for n in ("tmp_file_compress", "tmp_file_auto", "tmp_file_limit")] == [78, 79, 80]
    criu.images.mkdir()
    app.start()
    before = app.tick()

    # app.log and state are open, but not on a tmpfs: auto mode adds nothing
    pycriu_ok(criu.images, "dump.log", "dump", pid=app.pid, tmp_file_compress="zstd",
              tmp_file_auto=True, tmp_files=[str(app.dir)])
    with open(archive(criu.images), "rb") as f:
        assert f.read(4) == b"\x28\xb5\x2f\xfd"  # zstd
    log = wipe_after_dump(app)
    r = criu.restore()
    assert r.returncode == 0, r
    check_back(app, before, log)

    # A bad compression fails the request, the process keeps running.
    resp = pycriu_request(criu.images, "dump2.log", "dump", pid=app.pid, tmp_file_compress="lz4")
    assert isinstance(resp, pycriu.CRIUException)
    assert "--tmp-file-compress lz4: must be gzip, zstd or none" in log_of(criu.images, "dump2.log")
    assert alive(app.pid)

    # The limit is read: a tiny one fails an automatic set.
    mnt = tmpdir_tmp / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "f").write_bytes(b"z" * 4096)
        h = Holder(procs, tmpdir_tmp / "holder.json", ["open:%s" % (mnt / "f")])
        resp = pycriu_request(criu.images, "dump3.log", "dump", pid=h.pid, tmp_file_auto=True,
                              tmp_file_limit=1024)
        assert isinstance(resp, pycriu.CRIUException)
        assert "over --tmp-file-limit 1024" in log_of(criu.images, "dump3.log")
        assert alive(h.pid)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_upstream_rpc_test_tmp_file(workdir):
    """test/others/rpc/tmp_file.py, the test the series adds to upstream's
    RPC tests, run as upstream's Makefile runs it: ./criu and an rpc_pb2
    generated by protoc from the tree's rpc.proto in the working directory.
    It sends every --tmp-file field and checks that each reaches criu."""
    src = TREE / "test/others/rpc"
    subprocess.run(["protoc", "--proto_path=%s" % (TREE / "images"), "--python_out=%s" % workdir, "rpc.proto"],
                   check=True)
    (workdir / "criu").symlink_to(CRIU)
    env = dict(os.environ, PYTHONPATH="%s:%s" % (workdir, src))
    try:
        r = run_bounded(["/usr/bin/python3", str(src / "tmp_file.py"), "build/imgs_tmp_file"], "tmp_file.py",
                        "upstream's RPC test tmp_file.py", cwd=workdir, env=env)
    finally:
        leftover = glob.glob("/dev/shm/criu-rpc-tmp_file.*")
        for f in leftover:
            os.unlink(f)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert r.stdout.splitlines()[-1] == "PASS"
    assert leftover == []
