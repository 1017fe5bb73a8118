"""Fixtures for the end-to-end tests: the real criu binary, real processes.

Every test gets its own images directory, its own directory for process
reports (both under /var/tmp, so that tests may mount a fresh tmpfs on
/tmp) and its own temporary directory under /tmp for the files that
--tmp-file saves. Every process a test starts or restores is killed by pid
at teardown, also when the test fails. pytest is made a child subreaper so
that tasks restored with "criu restore -d" are its children and are reaped
at once (PID 1 on these machines reaps slowly).
"""
import atexit
import ctypes
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRIU = os.environ.get("CRIU", str(ROOT / "build/criu-4.1.1/criu/criu"))
PR_SET_CHILD_SUBREAPER = 36

# Tests mount empty tmpfs on /tmp, and the checkout may live under /tmp:
# the helper programs and a copy of criu are kept under /var/tmp.
BASE = Path("/var/tmp/criu-tmpfile-e2e")
BASE.mkdir(parents=True, exist_ok=True)
STAGE = Path(tempfile.mkdtemp(prefix="run.", dir=BASE))
atexit.register(shutil.rmtree, STAGE, ignore_errors=True)
APPS = STAGE / "apps"
shutil.copytree(Path(__file__).resolve().parent / "apps", APPS)
CRIU_OUTSIDE_TMP = str(STAGE / "criu")
shutil.copy2(CRIU, CRIU_OUTSIDE_TMP)

ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap():
    """Collect every exited child (restored tasks become ours)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_gone(pid, timeout=10):
    """Wait until /proc/PID is gone, reaping our own zombies."""
    deadline = time.time() + timeout
    while os.path.exists("/proc/%d" % pid):
        reap()
        if time.time() > deadline:
            raise AssertionError("pid %d still exists after %ss" % (pid, timeout))
        time.sleep(0.02)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


class CriuResult:
    def __init__(self, proc, log):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.log = Path(log).read_text(errors="replace") if Path(log).exists() else ""

    @property
    def output(self):
        return self.stderr + self.stdout + self.log

    def errors(self):
        return "\n".join(l for l in self.output.splitlines()
                         if "Error" in l and "RLIMIT_NOFILE" not in l)

    def __repr__(self):
        return "criu exited %d\n--- errors ---\n%s\n--- log tail ---\n%s" % (
            self.returncode, self.errors(), "\n".join(self.log.splitlines()[-30:]))


class Criu:
    def __init__(self, images, workdir, binary=CRIU):
        self.images = Path(images)
        self.workdir = Path(workdir)
        self.binary = binary
        self.runs = 0

    def run(self, action, *args, images=None, env=None, wrapper=(), timeout=120):
        self.runs += 1
        images = Path(images or self.images)
        images.mkdir(parents=True, exist_ok=True)
        log = self.workdir / ("%s-%d.log" % (action, self.runs))
        cmd = list(wrapper) + [self.binary, action, "-D", str(images), "-o", str(log), "-v4"] + list(args)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=env, timeout=timeout)
        return CriuResult(proc, log)

    def dump(self, pid, *args, **kw):
        return self.run("dump", "-t", str(pid), *args, **kw)

    def restore(self, *args, **kw):
        return self.run("restore", "-d", *args, **kw)


class Procs:
    """Processes started by a test; all killed by pid at teardown."""

    def __init__(self):
        self.pids = set()
        self.popens = []

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        # Not the checkout: restore must find the cwd, under any /tmp
        kw.setdefault("cwd", "/")
        p = subprocess.Popen(argv, **kw)
        self.popens.append(p)
        self.pids.add(p.pid)
        return p

    def track(self, pid):
        self.pids.add(pid)

    def cleanup(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.popens:
            try:
                p.wait(timeout=10)
            except Exception:
                pass
        for pid in self.pids:
            try:
                wait_gone(pid)
            except AssertionError:
                pass
        reap()


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.cleanup()


@pytest.fixture
def workdir(request):
    base = BASE
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in request.node.name)
    d = Path(tempfile.mkdtemp(prefix=name[:40] + ".", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tmpdir_tmp(request):
    """A fresh directory under /tmp for the files --tmp-file saves."""
    d = Path(tempfile.mkdtemp(prefix="criu-e2e-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def criu(workdir):
    return Criu(workdir / "images", workdir)


class App:
    """tmpapp.py: the #65 scenario process, driven by SIGUSR1."""

    def __init__(self, procs, directory, report, env=None):
        self.dir = Path(directory)
        self.report = Path(report)
        self.procs = procs
        self.env = env
        self.pid = None
        self.popen = None

    def prepare(self, conf="mode=fast\n", state=b"HEADER--------------"):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "app.conf").write_text(conf)
        (self.dir / "state").write_bytes(state)

    def start(self):
        log = open(self.dir / "app.log", "ab")
        self.popen = self.procs.start(["/usr/bin/python3", str(APPS / "tmpapp.py"),
                                       str(self.dir), str(self.report)],
                                      stdout=log, stderr=subprocess.DEVNULL, env=self.env)
        log.close()
        self.pid = self.popen.pid
        self.wait_ticks(1)
        return self

    def view(self):
        return json.loads(self.report.read_text())

    def wait_ticks(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                v = self.view()
                if v["ticks"] >= n:
                    return v
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.02)
        raise AssertionError("pid %s did not reach tick %d" % (self.pid, n))

    def tick(self):
        """One step; returns the process's own view after it."""
        self.report.unlink()
        os.kill(self.pid, signal.SIGUSR1)
        return self.wait_ticks(0)

    def wait_dead(self):
        """After a dump that killed it: reap, so its pid is free again."""
        if self.popen:
            self.popen.wait(timeout=10)
        wait_gone(self.pid)

    def restored(self):
        """Track the restored task (same pid) so teardown kills it."""
        self.procs.track(self.pid)
        assert alive(self.pid), "restored pid %d is not running" % self.pid
        self.popen = None


@pytest.fixture
def app(procs, tmpdir_tmp, workdir):
    a = App(procs, tmpdir_tmp / "app", workdir / "report.json")
    a.prepare()
    return a


def rewrite_archive(images, change):
    """Rewrite the --tmp-file archive of images, as an attacker would:
    change(members) gets and returns a list of (TarInfo, data or None)."""
    path = Path(images) / "tmp-files.tar.img"
    with tarfile.open(path) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for m, data in change(members):
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buf.getvalue())


def wipe_after_dump(app):
    """After a dump that killed app: reap it, keep its log, remove its dir."""
    app.wait_dead()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    return log


def check_back(app, before, log):
    """The restored app carries on: next tick, config found, log appended."""
    app.restored()
    after = app.tick()
    assert after["ticks"] == before["ticks"] + 1
    assert after["conf"] == "mode=fast\n"
    assert (app.dir / "app.log").read_text() == log + "tick %d\n" % after["ticks"]
    assert after["log_offset"] == before["log_offset"] + len("tick %d\n" % after["ticks"])
