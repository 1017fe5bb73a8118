"""What the container runtime tests share (runc, crun, Podman, LXC,
containerd, the Debian package): the busybox rootfs and its ticking
service, the runc container driver that crun's reuses, the host's
/etc/criu/runc.conf and default.conf saved and put back by fixtures, and
the wrappers that make each runtime run the criu under test."""
import json
import os
import re
import shutil
import time
from pathlib import Path

from conftest import CRIU_OUTSIDE_TMP, ROOT, TREE, alive, log_tail, run_bounded, wait_gone

RUNC = shutil.which("runc") or "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"
RESTORE_ERROR = "Can't open file data/app.log on restore"
TICKER = ("exec </dev/null >/dev/null 2>&1; exec 3>>/data/app.log; echo start >&3; n=0; "
          "while true; do n=$((n+1)); echo tick $n >&3; sleep 0.2; done")


def have_runc():
    return os.path.exists(RUNC) and os.path.exists(BUSYBOX)


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


class Ticking:
    """The ticking service's log, data/app.log on the host, of a container
    whose host directory bound at /data is self.data."""

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
                raise AssertionError("no tick %d in %s/app.log; log:\n%s" % (n, self.data, self.log()))
            time.sleep(0.05)


class Runc(Ticking):
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
def criu_version_line(binary=CRIU_OUTSIDE_TMP):
    """The line criu writes first in every log, "Version: V (gitid G)", for
    binary: the git id tells this build from any other criu."""
    r = run_bounded([binary, "--version"], "criu --version", "version of %s" % binary, timeout=30)
    version = re.search(r"^Version: (\S+)", r.stdout, re.M).group(1)
    gitid = re.search(r"^GitID: (\S+)", r.stdout, re.M)
    return "Version: %s (gitid %s)" % (version, gitid.group(1)) if gitid else "Version: %s" % version


def path_with_criu(directory):
    """PATH with directory/criu, a link to the criu under test, first."""
    directory.mkdir()
    os.symlink(CRIU_OUTSIDE_TMP, directory / "criu")
    return "%s:%s" % (directory, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
CRUN = Path(os.environ.get("CRUN", ROOT / "build/crun/bin/crun"))
LIBCRIU = (TREE / "lib/c/libcriu.so").resolve()


class CrunTools:
    """A directory of wrappers: bin/crun (crun with our libcriu, in a
    mount namespace without the cgroup2 mount), bin/criu (notes its
    caller, then the criu under test), lib/libcriu.so.2."""

    def __init__(self, where):
        self.dir = Path(where)
        self.bin = self.dir / "bin"
        self.lib = self.dir / "lib"
        self.bin.mkdir(parents=True)
        self.lib.mkdir()
        os.symlink(LIBCRIU, self.lib / "libcriu.so.2")
        self.callers = self.dir / "criu-callers"
        self.crun = self.bin / "crun"
        # build/crun's RUNPATH finds the libcriu it was built against: that
        # route is the one tested, unless the criu under test is another
        built_with = CRUN.parent.parent / "libcriu/lib/libcriu.so.2"
        ld_path = "" if built_with.exists() and built_with.resolve() == LIBCRIU else \
            "export LD_LIBRARY_PATH=%s\n" % self.lib
        self.crun.write_text(
            "#!/bin/sh\n"
            "%s"
            "exec unshare --mount --propagation private -- /bin/sh -c "
            "'! mountpoint -q /sys/fs/cgroup/unified || umount /sys/fs/cgroup/unified || exit 125; "
            "exec \"$0\" \"$@\"' %s \"$@\"\n" % (ld_path, CRUN))
        criu = self.bin / "criu"
        criu.write_text(
            "#!/bin/sh\n"
            "{ echo \"caller $(stat -L -c %%d:%%i /proc/$PPID/exe)\"; grep libcriu /proc/$PPID/maps; } >>%s\n"
            "exec %s \"$@\"\n" % (self.callers, CRIU_OUTSIDE_TMP))
        for f in (self.crun, criu):
            f.chmod(0o755)
        self.env = dict(os.environ, PATH="%s:%s" % (self.bin, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")))
        self.env.pop("CRIU_CONFIG_FILE", None)

    def libcriu_of_callers(self):
        """{program that ran criu: set of libcriu files it had mapped}"""
        seen, caller = {}, None
        text = self.callers.read_text() if self.callers.exists() else ""
        for line in text.splitlines():
            if line.startswith("caller "):
                caller = line[len("caller "):]
                seen.setdefault(caller, set())
            elif caller:
                seen[caller].add(line.split()[-1])
        return seen

    def assert_crun_ran_our_libcriu(self):
        seen = self.libcriu_of_callers()
        # crun's /proc/PID/exe reads "/" (it re-mounts its binary): by identity
        st = CRUN.stat()
        crun = "%d:%d" % (st.st_dev, st.st_ino)
        assert crun in seen, "criu was not run by %s (%s): %s" % (CRUN, crun, seen)
        assert seen[crun] == {str(LIBCRIU)}, "crun's libcriu is not the project's %s: %s" % (LIBCRIU, seen[crun])


def remove_cgroups(rel):
    """rmdir /sys/fs/cgroup/*/rel: crun 1.8.1 leaves the cgroups it made
    for a container whose restore failed. Only empty ones go (rmdir)."""
    for d in Path("/sys/fs/cgroup").glob("*/" + rel):
        try:
            d.rmdir()
        except OSError:
            pass
