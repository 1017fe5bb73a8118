"""--tmp-file through a container runtime: runc checkpoint and restore.

A busybox container (busybox-static installed into a rootfs of its own,
"runc spec" adjusted) keeps /data/app.log open on fd 3 and appends a line
"tick N" to it about every 0.2 s; /data is a bind mount of a host
directory that the test wipes after the checkpoint, as a reboot or a move
to another host would. The first line the shell writes is "start": a
container that was restarted instead of restored writes "start" and
"tick 1" again.

runc runs with a private state directory (--root) and the criu under test
(--criu); it passes criu options through a configuration file,
/etc/criu/runc.conf or the file named by the annotation org.criu.config.
The test saves /etc/criu/runc.conf (or its absence) and puts it back at
teardown. Every runc run has the time limit of run_bounded(); every
container is deleted with "runc delete -f" and its init killed by pid.
The container's stdio is /dev/null (the shell redirects it first): a host
file there would be an external file that criu refuses to dump.
"""
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import alive, archive, log_tail
from containers import RESTORE_ERROR, Runc, TICKER, assert_carries_on, checkpoint_ok, have_runc, restore_ok, wipe

pytestmark = pytest.mark.skipif(not have_runc(), reason="runc or busybox-static missing: run scripts/install-deps.sh")


@pytest.fixture
def ctr(procs, workdir, tmpdir_tmp, runc_conf):
    data = tmpdir_tmp / "data"
    data.mkdir()
    c = Runc(procs, workdir, data)
    yield c
    c.delete()


def round_trip(ctr):
    ctr.run()
    checkpoint_ok(ctr)
    assert (ctr.images / "tmp-files.tar.img").exists()
    before = ctr.log()
    wipe(ctr.data)
    restore_ok(ctr)
    assert_carries_on(ctr, before)


def test_runc_conf(ctr, runc_conf):
    runc_conf("tmp-file /data\n")
    ctr.bundle_spec()
    round_trip(ctr)


def test_annotation_org_criu_config(ctr, workdir):
    conf = workdir / "criu.conf"
    conf.write_text("tmp-file /data\n")
    ctr.bundle_spec(annotation=conf)
    round_trip(ctr)


def test_without_config_restore_fails(ctr):
    ctr.bundle_spec()
    ctr.run()
    checkpoint_ok(ctr)
    assert not (ctr.images / "tmp-files.tar.img").exists()
    wipe(ctr.data)
    r = ctr.restore()
    assert r.returncode != 0
    assert RESTORE_ERROR in (ctr.work / "restore.log").read_text(errors="replace"), log_tail(ctr.work / "restore.log")


def test_tmpfs_tmp_from_config_json(ctr, runc_conf):
    """/tmp is a tmpfs of the container (config.json): criu saves that
    tmpfs with the mount namespace, and --tmp-file saves /tmp/keep from
    inside it too; both come back."""
    runc_conf("tmp-file /data\ntmp-file /tmp/keep\n")
    ticker = TICKER.replace("exec 3>>", "mkdir /tmp/keep; echo kept > /tmp/keep/note; exec 4</tmp/keep/note; exec 3>>")
    ctr.bundle_spec(args=ticker, tmpfs_tmp=True)
    ctr.run()
    note = Path("/proc/%d/root/tmp/keep/note" % ctr.pid)
    assert note.read_text() == "kept\n"
    checkpoint_ok(ctr)
    names = subprocess.run(["tar", "-tzf", str(ctr.images / "tmp-files.tar.img")],
                           capture_output=True, text=True, check=True).stdout.split()
    assert "tmp/keep/note" in names and "data/app.log" in names
    before = ctr.log()
    wipe(ctr.data)
    restore_ok(ctr)
    assert Path("/proc/%d/root/tmp/keep/note" % ctr.pid).read_text() == "kept\n"
    assert os.readlink("/proc/%d/fd/4" % ctr.pid) == "/tmp/keep/note"
    assert_carries_on(ctr, before)


def test_compress_zstd(ctr, runc_conf):
    runc_conf("tmp-file /data\ntmp-file-compress zstd\n")
    ctr.bundle_spec()
    ctr.run()
    checkpoint_ok(ctr)
    assert (ctr.images / "tmp-files.tar.img").read_bytes()[:4] == b"\x28\xb5\x2f\xfd", "not a zstd stream"
    before = ctr.log()
    wipe(ctr.data)
    restore_ok(ctr)
    assert_carries_on(ctr, before)


@pytest.mark.parametrize("line,reason", [
    ("tmp-file-compress bogus", "--tmp-file-compress bogus"),
    ("tmp-file relative/x", "relative/x"),
])
def test_bad_value_fails_checkpoint_container_runs_on(ctr, runc_conf, line, reason):
    runc_conf("tmp-file /data\n%s\n" % line)
    ctr.bundle_spec()
    ctr.run()
    r = ctr.checkpoint()
    assert r.returncode != 0
    dump_log = ctr.work / "dump.log"
    said = r.stdout + r.stderr + (dump_log.read_text(errors="replace") if dump_log.exists() else "")
    # runc names the log; the log names the option and the value
    assert str(dump_log) in r.stdout + r.stderr
    assert reason in said and "Error" in said, said
    st = ctr.status()
    assert st and st["status"] == "running" and st["pid"] == ctr.pid, st
    n = ctr.ticks()
    ctr.wait_ticks(n + 3)
    assert alive(ctr.pid)


def test_images_inside_the_saved_bind_mount(ctr, runc_conf):
    """--image-path and --work-path inside the host dir that /data
    saves: the images must not be archived, and they must restore. The
    container sees them as /data/ckpt/..., criu as the host path: they
    are found by identity (device and inode)."""
    runc_conf("tmp-file /data\n")
    ctr.bundle_spec()
    ctr.run()
    images, work = ctr.data / "ckpt/img", ctr.data / "ckpt/work"
    checkpoint_ok(ctr, images=images, work=work)
    with tarfile.open(archive(images)) as t:
        names = t.getnames()
    assert "data/app.log" in names
    assert not [n for n in names if n.startswith("data/ckpt/")], names
    log = (work / "dump.log").read_text()
    assert "/data/ckpt/img is the images or work directory: not archived" in log
    assert "/data/ckpt/work is the images or work directory: not archived" in log
    before = ctr.log()
    (ctr.data / "app.log").unlink()
    restore_ok(ctr, images=images, work=work)
    assert_carries_on(ctr, before)


def test_read_only_root_as_runc_spec_makes_it(ctr, runc_conf):
    """runc spec's default: "readonly": true for the root; /data is a
    writable bind mount, which is all the container writes. The archive
    is staged next to /data, as the container's /tmp cannot be written."""
    runc_conf("tmp-file /data\n")
    ctr.bundle_spec(readonly=True)
    round_trip(ctr)
