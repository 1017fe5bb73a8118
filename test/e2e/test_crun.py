"""--tmp-file through crun: crun checkpoint and restore.

The crun is build/crun/bin/crun ("make crun", scripts/build-crun.sh):
Debian 12's crun 1.8.1 built from Debian's source with CRIU, against
this project's libcriu (Debian's own package has no +CRIU). crun
dlopen()s libcriu.so.2 and sets criu's options by libcriu calls; it never
names a CRIU configuration file and reads no org.criu.config annotation,
so the routes for "tmp-file /data" are CRIU_CONFIG_FILE in crun's
environment (criu, run by libcriu as "criu swrk", inherits it) and
/etc/criu/default.conf, which every criu on the host reads
(tmp-file-optional there).

The same busybox container as test_runc.py: it keeps /data/app.log open
and appends a tick every 0.2 s; /data is a host directory wiped between
checkpoint and restore.

crun is run through a wrapper (CrunTools) that
- lets crun find libcriu.so.2 by its RUNPATH (build/crun/libcriu/lib,
  whose libcriu.so.2 is a link to build/criu-VERSION/lib/c/libcriu.so),
  or, when the criu under test is another one (CRIU=...), sets
  LD_LIBRARY_PATH to a directory whose libcriu.so.2 is that tree's,
- runs crun in a mount namespace of its own without
  /sys/fs/cgroup/unified: crun 1.8.1 refuses this host's hybrid cgroup
  layout (hugetlb on the cgroup2 hierarchy), even with
  --cgroup-manager=disabled.
libcriu runs "criu" from PATH: the first criu on PATH is a script that
writes down which program ran it and the libcriu that program has mapped
(the device and inode of /proc/PPID/exe, and /proc/PPID/maps), then execs the criu under test.
The tests assert that it was crun, with the project's libcriu.

Every crun run has the time limit of run_bounded(); every container is
deleted with "crun delete -f" and its init killed by pid.
"""
from pathlib import Path

import pytest

from conftest import alive, log_tail, run_bounded
from containers import CRUN, CrunTools, RESTORE_ERROR, Runc, assert_carries_on, checkpoint_ok, remove_cgroups, restore_ok, wipe

pytestmark = pytest.mark.skipif(not CRUN.exists(), reason="%s missing: run make crun" % CRUN)


class Crun(Runc):
    """A container of test_runc.py's kind, driven by crun."""

    def __init__(self, procs, workdir, data, tools):
        super().__init__(procs, workdir, data)
        self.tools = tools
        self.env = dict(tools.env)

    def runc(self, *args, step, log=None, timeout=None):
        self.runs += 1
        cmd = [str(self.tools.crun), "--root", str(self.state)] + list(args)
        return run_bounded(cmd, "crun " + args[0], step.replace("runc", "crun"), log=log, timeout=timeout,
                           cwd=str(self.bundle), env=self.env)

    def delete(self):
        super().delete()
        remove_cgroups(self.id)

    def checkpoint(self, *extra, images=None, work=None):
        # crun does not create the work directory (runc does)
        Path(work or self.work).mkdir(parents=True, exist_ok=True)
        return super().checkpoint(*extra, images=images, work=work)


@pytest.fixture
def tools(workdir):
    return CrunTools(Path(workdir) / "crun-tools")


@pytest.fixture
def ctr(procs, workdir, tmpdir_tmp, tools, default_conf):
    # crun's criu reads /etc/criu/default.conf: no option there unless the
    # test puts it there (the host's file comes back at teardown)
    default_conf.write_text("# test_crun.py: no options here\n")
    data = tmpdir_tmp / "data"
    data.mkdir()
    c = Crun(procs, workdir, data, tools)
    yield c
    c.delete()


def test_crun_has_criu():
    r = run_bounded([str(CRUN), "--version"], "crun --version", "crun --version", timeout=30)
    assert r.returncode == 0 and "+CRIU" in r.stdout, r.stdout + r.stderr


def round_trip(ctr):
    ctr.run()
    checkpoint_ok(ctr)
    assert (ctr.images / "tmp-files.tar.img").exists()
    before = ctr.log()
    wipe(ctr.data)
    restore_ok(ctr)
    assert_carries_on(ctr, before)
    ctr.tools.assert_crun_ran_our_libcriu()


def test_crun_criu_config_file(ctr, workdir):
    conf = Path(workdir) / "criu.conf"
    conf.write_text("tmp-file /data\n")
    ctr.env["CRIU_CONFIG_FILE"] = str(conf)
    ctr.bundle_spec()
    round_trip(ctr)
    assert "tmp-files: " in (ctr.work / "dump.log").read_text()


def test_crun_default_conf(ctr, default_conf):
    default_conf.write_text("tmp-file-optional /data\n")
    ctr.bundle_spec()
    round_trip(ctr)


def test_crun_without_config_restore_fails(ctr):
    ctr.bundle_spec()
    ctr.run()
    checkpoint_ok(ctr)
    assert not (ctr.images / "tmp-files.tar.img").exists()
    wipe(ctr.data)
    r = ctr.restore()
    assert r.returncode != 0
    restore_log = ctr.work / "restore.log"
    assert RESTORE_ERROR in restore_log.read_text(errors="replace"), log_tail(restore_log)
    # what crun's user sees: a number and the log's path
    assert "CRIU restoring failed" in r.stderr and str(restore_log) in r.stderr, r.stderr


def test_crun_bad_value_fails_checkpoint_container_runs_on(ctr, workdir):
    conf = Path(workdir) / "criu.conf"
    conf.write_text("tmp-file relative/x\n")
    ctr.env["CRIU_CONFIG_FILE"] = str(conf)
    ctr.bundle_spec()
    ctr.run()
    r = ctr.checkpoint()
    assert r.returncode != 0
    dump_log = ctr.work / "dump.log"
    # crun prints libcriu's return value and the log's path, not criu's message
    assert "CRIU checkpointing failed -52.  Please check CRIU logfile %s" % dump_log in r.stderr, r.stdout + r.stderr
    assert "--tmp-file relative/x: the path must be absolute" in dump_log.read_text(errors="replace"), \
        log_tail(dump_log)
    st = ctr.status()
    assert st and st["status"] == "running" and st["pid"] == ctr.pid, st
    n = ctr.ticks()
    ctr.wait_ticks(n + 3)
    assert alive(ctr.pid)
