"""--tmp-file through Podman: checkpoint --export, wipe, restore --import.

Podman 4.3 (Debian 12) with runc, and with crun: Debian's crun 1.8.1 is
built without CRIU ("crun --version" shows no +CRIU), so the crun is
build/crun/bin/crun ("make crun", see test_crun.py), run through the
wrapper of containers.py's CrunTools (its libcriu, a mount namespace
without the cgroup2 mount of this host's hybrid layout). Podman runs
"crun checkpoint" with only PATH and XDG_RUNTIME_DIR in its environment
and crun names no CRIU configuration file: /etc/criu/default.conf is the
only route there ("tmp-file-optional /data"; the tests put the host's file
back after). There is no registry: the image is made with "podman import"
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

from conftest import BASE, CRIU_OUTSIDE_TMP, log_tail, run_bounded, wait_gone
from containers import CRUN, CrunTools, RESTORE_ERROR, RUNC, TICKER, make_rootfs, remove_cgroups

PODMAN = shutil.which("podman") or "/usr/bin/podman"

pytestmark = pytest.mark.skipif(not os.path.exists(PODMAN), reason="podman missing: run scripts/install-deps.sh")


class Podman:
    """Podman with its own storage; runtime runc, or crun (CrunTools of
    test_crun.py: its bin/crun wrapper and bin/criu first on PATH)."""

    def __init__(self, procs, workdir, crun_tools=None):
        self.procs = procs
        # podman: "the specified runroot is longer than 50 characters"
        self.w = Path(tempfile.mkdtemp(prefix="pod.", dir=BASE))
        if crun_tools is None:
            (self.w / "bin").mkdir()
            os.symlink(CRIU_OUTSIDE_TMP, self.w / "bin/criu")
            self.env = dict(os.environ, PATH="%s:%s" % (self.w / "bin", os.environ.get("PATH", "/usr/bin:/bin")))
            self.runtime = RUNC
            self.crun_tools = None
        else:
            self.crun_tools = crun_tools
            self.env = dict(crun_tools.env)
            self.runtime = str(crun_tools.crun)
        self.name = "criu-e2e-%d" % os.getpid()
        self.image = "localhost/criu-e2e-busybox:%d" % os.getpid()
        self.failed_restores = []  # ids of containers whose restore crun failed

    def run(self, *args, step, timeout=None, **kw):
        cmd = [PODMAN, "--root", str(self.w / "storage"), "--runroot", str(self.w / "run"),
               "--tmpdir", str(self.w / "tmp"), "--storage-driver", "vfs", "--events-backend", "none",
               "--cgroup-manager", "cgroupfs", "--runtime", self.runtime] + [str(a) for a in args]
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
        for cid in self.failed_restores:
            remove_cgroups("libpod_parent/libpod-" + cid)
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


def start_ticker(podman, workdir, data):
    """The busybox image, and the ticking container on it with data at
    /data; returns its pid once it ticked 3 times."""
    rootfs = workdir / "rootfs"
    make_rootfs(rootfs)
    tar = workdir / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    podman.ok("import", tar, podman.image, step="podman import of the busybox rootfs")
    data.mkdir()
    podman.ok("run", "-d", "--name", podman.name, "--network", "none",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
              "-v", "%s:/data" % data, podman.image, "sh", "-c", TICKER, step="podman run -d")
    pid = podman.track()
    wait_ticks(data / "app.log", 3)
    return pid


def checkpoint_export(podman, pid, export):
    """podman container checkpoint --export; the container is gone, and the
    archive carries the tmp-files images or not: their names in it."""
    podman.ok("container", "checkpoint", "--export", export, podman.name, step="podman container checkpoint --export")
    wait_gone(pid)
    with tarfile.open(export) if export.read_bytes()[:2] == b"\x1f\x8b" else \
            _zstd_tar(export) as t:
        return [n for n in t.getnames() if "tmp-files" in n]


def wipe_and_restore(podman, data, export):
    """Remove the checkpointed container, wipe data, restore --import."""
    podman.ok("rm", podman.name, step="podman rm of the checkpointed container")
    for f in data.iterdir():
        f.unlink()
    return podman.run("container", "restore", "--import", export, step="podman container restore --import")


def assert_carries_on(podman, log, before):
    podman.track()
    n = before.count("tick ")
    wait_ticks(log, n + 5)
    after = log.read_text()
    assert after.startswith(before)
    lines = after.splitlines()
    assert lines[0] == "start" and lines.count("start") == 1, after
    assert lines[1:] == ["tick %d" % i for i in range(1, len(lines))], after


def round_trip(podman, workdir, data):
    pid = start_ticker(podman, workdir, data)
    export = workdir / "checkpoint.tar.zst"
    names = checkpoint_export(podman, pid, export)
    assert "checkpoint/tmp-files.tar.img" in names and "checkpoint/tmp-files-manifest.img" in names, names
    log = data / "app.log"
    before = log.read_text()
    r = wipe_and_restore(podman, data, export)
    assert r.returncode == 0, "podman container restore --import failed:\n%s%s" % (r.stdout, r.stderr)
    assert_carries_on(podman, log, before)


def test_podman_checkpoint_export_restore_import(podman, runc_conf, workdir, tmpdir_tmp):
    runc_conf("tmp-file /data\n")
    round_trip(podman, workdir, tmpdir_tmp / "data")


def test_podman_without_option_restore_fails(podman, workdir, tmpdir_tmp):
    data = tmpdir_tmp / "data"
    pid = start_ticker(podman, workdir, data)
    export = workdir / "checkpoint.tar.zst"
    assert checkpoint_export(podman, pid, export) == []
    r = wipe_and_restore(podman, data, export)
    assert r.returncode != 0
    said = r.stdout + r.stderr
    # the user sees runc's line and the log's path
    assert "Error: OCI runtime error: " in said and "criu failed: type NOTIFY errno 0" in said, said
    restore_log = Path(said.split("log file: ")[1].split()[0])
    assert restore_log.name == "restore.log"
    assert RESTORE_ERROR in restore_log.read_text(errors="replace"), log_tail(restore_log)


def test_podman_bad_value_fails_checkpoint_container_runs_on(podman, runc_conf, workdir, tmpdir_tmp):
    data = tmpdir_tmp / "data"
    pid = start_ticker(podman, workdir, data)
    runc_conf("tmp-file relative/x\n")
    r = podman.run("container", "checkpoint", "--export", workdir / "checkpoint.tar.zst", podman.name,
                   step="podman container checkpoint --export with a bad value")
    assert r.returncode != 0
    said = r.stdout + r.stderr
    # the user sees runc's line with the log's path, then podman's
    assert "criu failed: type DUMP errno 56" in said, said
    assert "Error: `%s checkpoint " % RUNC in said and "` failed: exit status 1" in said, said
    dump_log = Path(said.split("log file: ")[1].split('"')[0].split()[0])
    assert dump_log.name == "dump.log"
    assert "--tmp-file relative/x: the path must be absolute" in dump_log.read_text(errors="replace"), \
        log_tail(dump_log)
    assert podman.track() == pid
    n = ticks(data / "app.log")
    wait_ticks(data / "app.log", n + 3)


# Podman with crun (build/crun, "make crun"): Podman runs "crun checkpoint"
# with only PATH and XDG_RUNTIME_DIR in its environment, and crun names no
# configuration file: /etc/criu/default.conf is the only route.

@pytest.fixture
def podman_crun(procs, workdir, default_conf):
    if not CRUN.exists():
        pytest.skip("%s missing: run make crun" % CRUN)
    default_conf.write_text("# test_podman.py: no options here\n")
    p = Podman(procs, workdir, CrunTools(workdir / "crun-tools"))
    yield p
    p.cleanup()


def test_podman_crun_default_conf(podman_crun, default_conf, workdir, tmpdir_tmp):
    default_conf.write_text("tmp-file-optional /data\n")
    round_trip(podman_crun, workdir, tmpdir_tmp / "data")
    podman_crun.crun_tools.assert_crun_ran_our_libcriu()


def test_podman_crun_without_option_restore_fails(podman_crun, workdir, tmpdir_tmp):
    data = tmpdir_tmp / "data"
    pid = start_ticker(podman_crun, workdir, data)
    export = workdir / "checkpoint.tar.zst"
    assert checkpoint_export(podman_crun, pid, export) == []
    r = wipe_and_restore(podman_crun, data, export)
    assert r.returncode != 0
    said = r.stdout + r.stderr
    # the user sees crun's line, with the log's path
    assert "Error: OCI runtime error: " in said and "CRIU restoring failed -52.  Please check CRIU logfile " in said, said
    restore_log = Path(said.split("Please check CRIU logfile ")[1].split()[0].rstrip(":"))
    podman_crun.failed_restores.append(restore_log.parent.parent.name)  # .../CONTAINER-ID/userdata/restore.log
    assert RESTORE_ERROR in restore_log.read_text(errors="replace"), log_tail(restore_log)
    podman_crun.crun_tools.assert_crun_ran_our_libcriu()


def test_podman_crun_bad_value_fails_checkpoint_container_runs_on(podman_crun, default_conf, workdir,
                                                                  tmpdir_tmp):
    data = tmpdir_tmp / "data"
    pid = start_ticker(podman_crun, workdir, data)
    default_conf.write_text("tmp-file-optional relative/x\n")
    r = podman_crun.run("container", "checkpoint", "--export", workdir / "checkpoint.tar.zst", podman_crun.name,
                        step="podman container checkpoint --export with a bad value")
    default_conf.write_text("# test_podman.py: no options here\n")
    assert r.returncode != 0
    said = r.stdout + r.stderr
    # the user sees crun's line, with the log's path, then podman's
    assert "CRIU checkpointing failed -52.  Please check CRIU logfile " in said, said
    assert "Error: `%s checkpoint " % podman_crun.runtime in said and "` failed: exit status 1" in said, said
    dump_log = Path(said.split("Please check CRIU logfile ")[1].split()[0].rstrip(":"))
    assert dump_log.name == "dump.log"
    assert "--tmp-file-optional relative/x: the path must be absolute" in dump_log.read_text(errors="replace"), \
        log_tail(dump_log)
    assert podman_crun.track() == pid
    n = ticks(data / "app.log")
    wait_ticks(data / "app.log", n + 3)


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
