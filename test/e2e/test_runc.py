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
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from criutree import archive
from conftest import CRIU_OUTSIDE_TMP, alive, log_tail, run_bounded, wait_gone

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"
RUNC_CONF = Path("/etc/criu/runc.conf")
RESTORE_ERROR = "Can't open file data/app.log on restore"

TICKER = ("exec </dev/null >/dev/null 2>&1; exec 3>>/data/app.log; echo start >&3; n=0; "
          "while true; do n=$((n+1)); echo tick $n >&3; sleep 0.2; done")


def have_runc():
    return os.path.exists(RUNC) and os.path.exists(BUSYBOX)


pytestmark = pytest.mark.skipif(not have_runc(), reason="runc or busybox-static missing: run scripts/install-deps.sh")


@pytest.fixture
def runc_conf():
    """set(text) writes /etc/criu/runc.conf (None: no such file); the
    previous content, or absence, of the file and of /etc/criu comes back
    at teardown."""
    had_dir = RUNC_CONF.parent.exists()
    old = RUNC_CONF.read_bytes() if RUNC_CONF.exists() else None

    def set_conf(text):
        if text is None:
            RUNC_CONF.unlink(missing_ok=True)
        else:
            RUNC_CONF.parent.mkdir(parents=True, exist_ok=True)
            RUNC_CONF.write_text(text)
    set_conf(None)
    yield set_conf
    if old is None:
        RUNC_CONF.unlink(missing_ok=True)
        if not had_dir:
            try:
                RUNC_CONF.parent.rmdir()
            except OSError:
                pass
    else:
        RUNC_CONF.parent.mkdir(parents=True, exist_ok=True)
        RUNC_CONF.write_bytes(old)


def make_rootfs(rootfs):
    """A busybox rootfs: /bin/busybox and its applets as links."""
    (rootfs / "bin").mkdir(parents=True)
    for d in ("proc", "sys", "dev", "tmp", "data", "etc", "root"):
        (rootfs / d).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    # "busybox --install -s DIR" makes absolute links to the running
    # binary's path: run it inside the rootfs so that they point at /bin/busybox.
    r = run_bounded(["chroot", str(rootfs), "/bin/busybox", "--install", "-s", "/bin"],
                    "busybox --install", "busybox rootfs in %s" % rootfs, timeout=30)
    assert r.returncode == 0, r.stderr
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")


class Runc:
    """One container of the test: its bundle, state dir, images, work dir."""

    seq = 0

    def __init__(self, procs, workdir, data):
        Runc.seq += 1
        self.procs = procs
        self.workdir = Path(workdir)
        self.data = Path(data)  # the host directory bind-mounted at /data
        self.bundle = self.workdir / "bundle"
        self.state = self.workdir / "runc-state"
        self.images = self.workdir / "images"
        self.work = self.workdir / "work"
        self.id = "e2e-%d-%d" % (os.getpid(), Runc.seq)
        self.pid = None
        self.runs = 0

    def runc(self, *args, step, log=None, timeout=None):
        self.runs += 1
        cmd = [RUNC, "--root", str(self.state), "--criu", CRIU_OUTSIDE_TMP] + list(args)
        return run_bounded(cmd, "runc " + args[0], step, log=log, timeout=timeout, cwd=str(self.bundle))

    def bundle_spec(self, args=TICKER, annotation=None, tmpfs_tmp=False, readonly=False):
        make_rootfs(self.bundle / "rootfs")
        r = run_bounded([RUNC, "spec"], "runc spec", "runc spec in %s" % self.bundle,
                        cwd=str(self.bundle), timeout=30)
        assert r.returncode == 0, r.stderr
        path = self.bundle / "config.json"
        spec = json.loads(path.read_text())
        spec["process"]["terminal"] = False
        spec["root"]["readonly"] = readonly
        spec["process"]["args"] = ["sh", "-c", args]
        spec["mounts"].append({"destination": "/data", "type": "bind",
                               "source": str(self.data), "options": ["rbind", "rw"]})
        if tmpfs_tmp:
            spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["nosuid", "nodev", "mode=1777"]})
        if annotation:
            spec.setdefault("annotations", {})["org.criu.config"] = str(annotation)
        path.write_text(json.dumps(spec, indent=2))
        return spec

    def run(self):
        r = self.runc("run", "-d", "--bundle", str(self.bundle), self.id, step="runc run -d " + self.id)
        assert r.returncode == 0, "runc run failed: %s%s" % (r.stdout, r.stderr)
        self.started()
        self.wait_ticks(3)

    def started(self):
        """Read the container's init pid from runc, track it for teardown."""
        st = self.status()
        assert st and st["status"] == "running", st
        self.pid = st["pid"]
        self.procs.track(self.pid)

    def status(self):
        r = self.runc("state", self.id, step="runc state " + self.id, timeout=30)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def checkpoint(self, *extra, images=None, work=None):
        images = Path(images or self.images)
        work = Path(work or self.work)
        return self.runc("checkpoint", "--image-path", str(images), "--work-path", str(work), *extra, self.id,
                         step="runc checkpoint of %s" % self.id, log=work / "dump.log")

    def restore(self, images=None, work=None):
        images = Path(images or self.images)
        work = Path(work or self.work)
        return self.runc("restore", "-d", "--image-path", str(images), "--work-path", str(work),
                         "--bundle", str(self.bundle), self.id,
                         step="runc restore of %s" % self.id, log=work / "restore.log")

    def log(self):
        try:
            return (self.data / "app.log").read_text()
        except FileNotFoundError:
            return ""

    def ticks(self):
        return sum(1 for l in self.log().splitlines() if l.startswith("tick "))

    def wait_ticks(self, n, timeout=20):
        deadline = time.time() + timeout
        while self.ticks() < n:
            if time.time() > deadline:
                raise AssertionError("container %s did not reach tick %d; log:\n%s" % (self.id, n, self.log()))
            time.sleep(0.05)

    def gone(self):
        """After a checkpoint that stopped the container: its init is gone
        and nothing writes the log any more."""
        if self.pid:
            wait_gone(self.pid)

    def delete(self):
        self.runc("delete", "-f", self.id, step="runc delete -f " + self.id, timeout=30)
        if self.pid:
            try:
                wait_gone(self.pid)
            except AssertionError:
                pass


@pytest.fixture
def ctr(procs, workdir, tmpdir_tmp, runc_conf):
    data = tmpdir_tmp / "data"
    data.mkdir()
    c = Runc(procs, workdir, data)
    yield c
    c.delete()


def wipe(directory):
    """Empty the host directory (the bind mount's source stays)."""
    for p in directory.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def checkpoint_ok(ctr, **kw):
    r = ctr.checkpoint(**kw)
    work = Path(kw.get("work") or ctr.work)
    assert r.returncode == 0, "runc checkpoint failed: %s%s\n%s" % (r.stdout, r.stderr, log_tail(work / "dump.log"))
    ctr.gone()
    return r


def restore_ok(ctr, **kw):
    r = ctr.restore(**kw)
    work = Path(kw.get("work") or ctr.work)
    assert r.returncode == 0, "runc restore failed: %s%s\n%s" % (r.stdout, r.stderr, log_tail(work / "restore.log"))
    ctr.started()
    return r


def assert_carries_on(ctr, before):
    """The container was restored, not restarted: the log is the one saved
    at the checkpoint, followed by the next ticks, numbered on with no gap."""
    n = before.count("tick ")
    ctr.wait_ticks(n + 5)
    log = ctr.log()
    assert log.startswith(before), "the log saved at checkpoint is not the start of the log after restore"
    lines = log.splitlines()
    assert lines[0] == "start" and lines.count("start") == 1, "container restarted:\n" + log
    assert lines[1:] == ["tick %d" % i for i in range(1, len(lines))], "gap or restart in the ticks:\n" + log
    assert alive(ctr.pid)


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
