"""--tmp-file through Podman: checkpoint --export, wipe, restore --import.

Podman 4.3 (Debian 12) with runc as its OCI runtime: Debian's crun 1.8.1
is built without CRIU ("crun --version" shows no +CRIU), so it cannot
checkpoint. There is no registry: the image is made with "podman import"
from a busybox rootfs. Podman's storage, run and tmp directories are the
test's own (--root, --runroot, --tmpdir, vfs driver, no events), so the
host's containers and images are never touched. The container runs with
--network none and explicit nofile/nproc limits: Podman's default
RLIMIT_NOFILE of 1048576 is above the hard limit here and raising it
needs CAP_SYS_RESOURCE, which these machines lack ("error setting rlimit
type 7: operation not permitted").

Podman calls runc, runc calls "criu" from PATH: the criu under test is
put first on PATH, and runc reads /etc/criu/runc.conf (the test writes
"tmp-file /data" there and puts the old content back). The exported
archive must carry the tmp-files images; the container restored from it
after the host dir bound at /data was wiped carries on ticking.
"""
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BASE, CRIU_OUTSIDE_TMP, run_bounded, wait_gone
from test_runc import RUNC, TICKER, make_rootfs, runc_conf  # noqa: F401  (fixture)

PODMAN = shutil.which("podman") or "/usr/bin/podman"

pytestmark = pytest.mark.skipif(not os.path.exists(PODMAN), reason="podman missing: run scripts/install-deps.sh")


class Podman:
    def __init__(self, procs, workdir):
        self.procs = procs
        # podman: "the specified runroot is longer than 50 characters"
        self.w = Path(tempfile.mkdtemp(prefix="pod.", dir=BASE))
        (self.w / "bin").mkdir()
        os.symlink(CRIU_OUTSIDE_TMP, self.w / "bin/criu")
        self.env = dict(os.environ, PATH="%s:%s" % (self.w / "bin", os.environ.get("PATH", "/usr/bin:/bin")))
        self.name = "criu-e2e-%d" % os.getpid()
        self.image = "localhost/criu-e2e-busybox:%d" % os.getpid()

    def run(self, *args, step, timeout=None, **kw):
        cmd = [PODMAN, "--root", str(self.w / "storage"), "--runroot", str(self.w / "run"),
               "--tmpdir", str(self.w / "tmp"), "--storage-driver", "vfs", "--events-backend", "none",
               "--cgroup-manager", "cgroupfs", "--runtime", RUNC] + [str(a) for a in args]
        return run_bounded(cmd, "podman " + str(args[0]), step, timeout=timeout, env=self.env, **kw)

    def ok(self, *args, step, **kw):
        r = self.run(*args, step=step, **kw)
        assert r.returncode == 0, "%s failed (%d):\n%s%s" % (step, r.returncode, r.stdout, r.stderr)
        return r

    def track(self):
        st = json.loads(self.ok("inspect", self.name, step="podman inspect").stdout)[0]["State"]
        assert st["Running"], st
        for pid in (st["Pid"], st.get("ConmonPid")):
            if pid:
                self.procs.track(pid)
        return st["Pid"]

    def cleanup(self):
        self.run("rm", "-f", "-t", "0", self.name, step="podman rm -f", timeout=60)
        self.run("rmi", "-f", self.image, step="podman rmi", timeout=60)
        shutil.rmtree(self.w, ignore_errors=True)


@pytest.fixture
def podman(procs, workdir, runc_conf):
    p = Podman(procs, workdir)
    yield p
    p.cleanup()


def ticks(log):
    return sum(1 for l in log.read_text().splitlines() if l.startswith("tick ")) if log.exists() else 0


def wait_ticks(log, n, timeout=20):
    deadline = time.time() + timeout
    while ticks(log) < n:
        assert time.time() < deadline, "no tick %d in %s" % (n, log)
        time.sleep(0.05)


def test_podman_checkpoint_export_restore_import(podman, runc_conf, workdir, tmpdir_tmp):
    runc_conf("tmp-file /data\n")
    rootfs = workdir / "rootfs"
    make_rootfs(rootfs)
    tar = workdir / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    podman.ok("import", tar, podman.image, step="podman import of the busybox rootfs")
    data = tmpdir_tmp / "data"
    data.mkdir()
    log = data / "app.log"
    podman.ok("run", "-d", "--name", podman.name, "--network", "none",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
              "-v", "%s:/data" % data, podman.image, "sh", "-c", TICKER, step="podman run -d")
    pid = podman.track()
    wait_ticks(log, 3)
    export = workdir / "checkpoint.tar.zst"
    podman.ok("container", "checkpoint", "--export", export, podman.name, step="podman container checkpoint --export")
    wait_gone(pid)
    with tarfile.open(export) if export.read_bytes()[:2] == b"\x1f\x8b" else \
            _zstd_tar(export) as t:
        names = t.getnames()
    assert "checkpoint/tmp-files.tar.img" in names and "checkpoint/tmp-files-manifest.img" in names, names
    before = log.read_text()
    podman.ok("rm", podman.name, step="podman rm of the checkpointed container")
    for f in data.iterdir():
        f.unlink()
    podman.ok("container", "restore", "--import", export, step="podman container restore --import")
    podman.track()
    n = before.count("tick ")
    wait_ticks(log, n + 5)
    after = log.read_text()
    assert after.startswith(before)
    lines = after.splitlines()
    assert lines[0] == "start" and lines.count("start") == 1, after
    assert lines[1:] == ["tick %d" % i for i in range(1, len(lines))], after


class _zstd_tar:
    """tarfile of a zstd-compressed tar (Python 3.11 has no zstd)."""

    def __init__(self, path):
        self.raw = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout

    def __enter__(self):
        import io
        self.t = tarfile.open(fileobj=io.BytesIO(self.raw))
        return self.t

    def __exit__(self, *a):
        self.t.close()
