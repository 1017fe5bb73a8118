"""--tmp-file through LXC: lxc-checkpoint -s, wipe, lxc-checkpoint -r.

LXC 5.0.2 (Debian 12's lxc) execs the first "criu" on PATH with a fixed
argument list and passes no option through: criu's options reach it only
through /etc/criu/default.conf, which every criu run on the host reads,
or through a file named by CRIU_CONFIG_FILE in lxc-checkpoint's
environment. The criu under test is put first on PATH (a directory with
a "criu" link to it), and every test asserts that the dump log's version
line is that binary's.

The container is the busybox rootfs of test_runc.py with the same
ticking shell (/ticker.sh, its init), /data a bind mount of a host
directory that is wiped after the checkpoint. Its configuration is the
minimum criu can dump: no network but lo (lxc.net.0.type = empty),
lxc.console.path = none and lxc.tty.max = 0 (a console or tty is a pty
criu refuses as external), and no lxc.apparmor.profile (LXC would pass
"--lsm-profile apparmor:..." to criu, which fails on a host without
AppArmor). The container lives in its own lxcpath (-P) under the test's
work directory.

Every LXC tool runs with the time limit of run_bounded(). At teardown
"lxc-stop -k" (bounded), then the container's init and the LXC monitor
("[lxc monitor] LXCPATH NAME", a daemon that pytest, a subreaper,
inherits) are killed by pid; the container's cgroups and LXC's lock
directory for the lxcpath are removed.
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import alive, kill_tree, log_tail, run_bounded, wait_gone
from containers import RESTORE_ERROR, TICKER, assert_carries_on, criu_version_line, make_rootfs, path_with_criu, wipe, Ticking

LXC_START = shutil.which("lxc-start") or "/usr/bin/lxc-start"
LXC_LOCK = Path("/run/lxc/lock")

pytestmark = pytest.mark.skipif(not os.path.exists(LXC_START) or not os.path.exists("/bin/busybox"),
                                reason="lxc or busybox-static missing: run scripts/install-deps.sh")


def monitor_pids(lxcpath, name):
    """The pids of the LXC monitor of the container: "[lxc monitor] LXCPATH NAME"."""
    want = "[lxc monitor] %s %s" % (lxcpath, name)
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip() == want:
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


class Lxc(Ticking):
    """One container of the test: its lxcpath, rootfs, images, data."""

    seq = 0

    def __init__(self, procs, workdir, data):
        Lxc.seq += 1
        self.procs = procs
        self.workdir = Path(workdir)
        self.data = Path(data)
        self.lxcpath = self.workdir / "lxc"
        self.name = "e2e-%d-%d" % (os.getpid(), Lxc.seq)
        self.rootfs = self.lxcpath / self.name / "rootfs"
        self.images = self.workdir / "ckpt"
        self.env = dict(os.environ, PATH=path_with_criu(self.workdir / "bin"))
        self.env.pop("CRIU_CONFIG_FILE", None)
        self.pid = None
        self.lock_made = not LXC_LOCK.parent.exists()
        # LXC leaves an empty cgroup "lxc.pivot" in each hierarchy
        self.pivots_made = not list(Path("/sys/fs/cgroup").glob("*/lxc.pivot"))

    def tool(self, tool, *args, step, env=None, log=None, timeout=None):
        cmd = ["lxc-" + tool, "-P", str(self.lxcpath), "-n", self.name] + [str(a) for a in args]
        return run_bounded(cmd, "lxc-" + tool, step, log=log, timeout=timeout, env=env or self.env)

    def create(self):
        make_rootfs(self.rootfs)
        (self.rootfs / "ticker.sh").write_text(TICKER + "\n")
        (self.lxcpath / self.name / "config").write_text("\n".join([
            "lxc.uts.name = %s" % self.name,
            "lxc.rootfs.path = dir:%s" % self.rootfs,
            "lxc.net.0.type = empty",
            "lxc.console.path = none",
            "lxc.tty.max = 0",
            "lxc.pty.max = 0",
            "lxc.mount.auto = proc:mixed sys:ro",
            "lxc.mount.entry = %s data none bind,create=dir 0 0" % self.data,
            "lxc.init.cmd = /bin/sh /ticker.sh",
        ]) + "\n")

    def start(self):
        r = self.tool("start", step="lxc-start " + self.name, timeout=60)
        assert r.returncode == 0, "lxc-start failed: %s%s" % (r.stdout, r.stderr)
        self.started()
        self.wait_ticks(3)

    def info(self, flag):
        r = self.tool("info", "-H", flag, step="lxc-info %s %s" % (flag, self.name), timeout=30)
        return r.stdout.strip() if r.returncode == 0 else None

    def state(self):
        return self.info("-s")

    def started(self):
        """The container runs: track its init's pid for teardown."""
        assert self.state() == "RUNNING", self.state()
        self.pid = int(self.info("-p"))
        self.procs.track(self.pid)

    def checkpoint(self, env=None, verbose=True):
        """lxc-checkpoint -s: dump, then stop the container. -v makes LXC
        run criu with -v4 (without it the log holds errors and warnings
        only): the log's version line shows which criu ran."""
        return self.tool("checkpoint", "-s", "-D", self.images, *(["-v"] if verbose else []), env=env,
                         step="lxc-checkpoint -s of %s" % self.name, log=self.images / "dump.log")

    def restore(self, env=None):
        return self.tool("checkpoint", "-r", "-D", self.images, "-v", env=env,
                         step="lxc-checkpoint -r of %s" % self.name, log=self.images / "restore.log")

    def delete(self):
        if (self.lxcpath / self.name / "config").exists():
            self.tool("stop", "-k", step="lxc-stop -k " + self.name, timeout=30)
        for pid in [self.pid] + monitor_pids(self.lxcpath, self.name):
            if pid:
                kill_tree(pid)
                try:
                    wait_gone(pid)
                except AssertionError:
                    pass
        cgroups = list(Path("/sys/fs/cgroup").glob("*/lxc.*.%s" % self.name))
        if self.pivots_made:
            cgroups += list(Path("/sys/fs/cgroup").glob("*/lxc.pivot"))
        for cg in cgroups:
            try:
                os.rmdir(cg)
            except OSError:
                pass
        # LXC's lock directory for the lxcpath, and its parents up to
        # /run/lxc/lock while they are empty (/run/lxc too if LXC made it here)
        lock = LXC_LOCK / str(self.lxcpath).lstrip("/")
        shutil.rmtree(lock, ignore_errors=True)
        top = LXC_LOCK.parent if self.lock_made else LXC_LOCK
        for d in [p for p in lock.parents if top in p.parents or (self.lock_made and p == top)]:
            try:
                d.rmdir()
            except OSError:
                break


@pytest.fixture
def lxc(procs, workdir, tmpdir_tmp, default_conf):
    """A container, and an empty /etc/criu/default.conf (the host's comes back)."""
    default_conf.write_text("")
    data = tmpdir_tmp / "data"
    data.mkdir()
    c = Lxc(procs, workdir, data)
    c.create()
    yield c
    c.delete()


def config_file(lxc, text):
    """lxc-checkpoint's environment with CRIU_CONFIG_FILE naming a file of text."""
    conf = lxc.workdir / "criu.conf"
    conf.write_text(text)
    return dict(lxc.env, CRIU_CONFIG_FILE=str(conf))


def checkpoint_ok(lxc, env=None):
    r = lxc.checkpoint(env=env)
    assert r.returncode == 0, "lxc-checkpoint -s failed: %s%s\n%s" % (
        r.stdout, r.stderr, log_tail(lxc.images / "dump.log"))
    dump_log = (lxc.images / "dump.log").read_text(errors="replace")
    assert criu_version_line() in dump_log, "not the criu under test:\n" + dump_log[:300]
    wait_gone(lxc.pid)
    assert lxc.state() == "STOPPED"
    return dump_log


def restore_ok(lxc, env=None):
    r = lxc.restore(env=env)
    assert r.returncode == 0, "lxc-checkpoint -r failed: %s%s\n%s" % (
        r.stdout, r.stderr, log_tail(lxc.images / "restore.log"))
    lxc.started()


def round_trip(lxc, env=None):
    lxc.start()
    dump_log = checkpoint_ok(lxc, env)
    assert "tmp-files: Saving 1 --tmp-file path(s)" in dump_log
    assert (lxc.images / "tmp-files.tar.img").exists()
    before = lxc.log()
    wipe(lxc.data)
    restore_ok(lxc, env)
    assert_carries_on(lxc, before)


def test_default_conf_tmp_file_optional(lxc, default_conf):
    """The route every LXC container of the host shares: tmp-file-optional
    in /etc/criu/default.conf."""
    default_conf.write_text("tmp-file-optional /data\n")
    round_trip(lxc)


def test_criu_config_file_env(lxc):
    """CRIU_CONFIG_FILE in lxc-checkpoint's environment reaches criu."""
    round_trip(lxc, config_file(lxc, "tmp-file /data\n"))


def test_without_option_restore_fails(lxc):
    lxc.start()
    checkpoint_ok(lxc)
    assert not (lxc.images / "tmp-files.tar.img").exists()
    wipe(lxc.data)
    r = lxc.restore()
    assert r.returncode != 0
    # What LXC's user sees: an exit status and no reason; criu's is in the
    # restore.log of the directory given to -D.
    assert "criu process exited 1" in r.stderr and "Restoring %s failed" % lxc.name in r.stderr, r.stderr
    assert RESTORE_ERROR in (lxc.images / "restore.log").read_text(errors="replace"), \
        log_tail(lxc.images / "restore.log")
    assert lxc.state() == "STOPPED"


def test_bad_value_fails_checkpoint_container_runs_on(lxc):
    env = config_file(lxc, "tmp-file /data\ntmp-file-compress bogus\n")
    lxc.start()
    r = lxc.checkpoint(env=env, verbose=False)
    assert r.returncode != 0
    # What LXC's user sees: "dump failed with 1" and an empty "criu
    # output:"; the reason is in dump.log of the directory given to -D.
    assert "dump failed with 1" in r.stderr and "Checkpointing %s failed" % lxc.name in r.stderr, r.stderr
    assert re.search(r"criu output: *$", r.stderr, re.M), r.stderr
    # At LXC's default verbosity the log holds the error only
    dump_log = (lxc.images / "dump.log").read_text(errors="replace")
    assert "--tmp-file-compress bogus: must be gzip, zstd or none" in dump_log, log_tail(lxc.images / "dump.log")
    assert lxc.state() == "RUNNING" and int(lxc.info("-p")) == lxc.pid
    n = lxc.ticks()
    lxc.wait_ticks(n + 3)
    assert alive(lxc.pid)
