"""Fixtures for the end-to-end tests: the real criu binary, real processes.

Every test gets its own images directory, its own directory for process
reports (both under /var/tmp, so that tests may mount a fresh tmpfs on
/tmp) and its own temporary directory under /tmp for the files that
--tmp-file saves. Every process a test starts or restores is killed by pid
at teardown, also when the test fails. pytest is made a child subreaper so
that tasks restored with "criu restore -d" are its children and are reaped
at once (PID 1 on these machines reaps slowly).

Nothing may hang: every run of criu (or of a program that runs criu) goes
through a TimeLimit, CRIU_TIMEOUT seconds (default 120) unless the test
gives its own. When the time is up, criu is killed with its process group
and every descendant, and the test fails with an AssertionError naming the
step that hung and showing the tail of its log.

The criu under test is $CRIU, by default the one built from the pinned
upstream release of scripts/upstream.conf (build/criu-VERSION).
"""
import atexit
import ctypes
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "scripts"))
from upstream_conf import UPSTREAM  # noqa: E402  VERSION, TARBALL, SHA256 of the pin

BUILD_TREE = ROOT / ("build/criu-" + UPSTREAM.VERSION)  # what "make build" builds
CRIU = os.environ.get("CRIU", str(BUILD_TREE / "criu/criu"))
# The built tree of the criu under test: its crit, pycriu, libcriu and docs.
TREE = Path(os.environ.get("CRIU_TREE") or Path(CRIU).resolve().parents[1])
if not (TREE / "lib/c/criu.h").exists():
    TREE = BUILD_TREE
CRIU_TIMEOUT = float(os.environ.get("CRIU_TIMEOUT", "120"))
PR_SET_CHILD_SUBREAPER = 36

# The two images --tmp-file writes, by their names in the images directory.
ARCHIVE = "tmp-files.tar.img"
MANIFEST = "tmp-files-manifest.img"

# Paths --tmp-file refuses, with criu's message; for the command line and RPC.
BAD_PATHS = [
    ("relative/path", "--tmp-file relative/path: the path must be absolute"),
    ("", "--tmp-file: the path is empty"),
    ("/tmp/a/../b", '--tmp-file /tmp/a/../b: ".." is not allowed in the path'),
    ("/", "--tmp-file /: refusing to save the whole root"),
]

# Tests mount empty tmpfs on /tmp, and the checkout may live under /tmp:
# the helper programs, the demos' service and a copy of criu are kept
# under /var/tmp.
BASE = Path("/var/tmp/criu-tmpfile-e2e")
BASE.mkdir(parents=True, exist_ok=True)
STAGE = Path(tempfile.mkdtemp(prefix="run.", dir=BASE))
atexit.register(shutil.rmtree, STAGE, ignore_errors=True)
APPS = STAGE / "apps"
shutil.copytree(Path(__file__).resolve().parent / "apps", APPS)
TICKER = STAGE / "ticker.py"
shutil.copy2(ROOT / "scripts/ticker.py", TICKER)
CRIU_OUTSIDE_TMP = str(STAGE / "criu")
shutil.copy2(CRIU, CRIU_OUTSIDE_TMP)

ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

# In CI (CI=true), a test that does not run is a failure: a missing tool, a
# failed download or a missing privilege must not turn the suite green.
# A skip is let through only for a test marked
# @pytest.mark.allow_skip("why this machine cannot run it", when=CONDITION)
# whose CONDITION holds on the machine; the summary then shows the reason.
IN_CI = os.environ.get("CI") == "true"


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_skip(reason, when=True): in CI (CI=true), a skip of this test is "
                            "expected on machines where when holds, for reason; any other skip fails there")


def ci_skip_verdict(item, reason):
    """In CI: None if the skip of item (with reason) is allowed, else the failure message"""
    m = item.get_closest_marker("allow_skip") if item is not None else None
    if m and m.kwargs.get("when", True):
        return None
    return ("skipped in CI (CI=true), which is a failure: %s (mark the test "
            "@pytest.mark.allow_skip(reason, when=...) if this machine is expected not to run it)" % reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not IN_CI or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    why = ci_skip_verdict(item, reason)
    if why is None:
        m = item.get_closest_marker("allow_skip")
        path, line, _ = rep.longrepr
        rep.longrepr = (path, line, "%s (expected on this machine in CI: %s)" % (reason, m.args[0]))
        return
    rep.outcome = "failed"
    rep.longrepr = why


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if IN_CI and rep.skipped:
        # A whole module skipped at import: no test of it carries a marker
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = ci_skip_verdict(None, reason)


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


def descendants(pid):
    """The children of pid, their children, and so on."""
    found, todo = [], [pid]
    while todo:
        for f in glob.glob("/proc/%d/task/*/children" % todo.pop()):
            try:
                with open(f) as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def kill_tree(pid):
    """SIGKILL pid, its process group if it leads one, and all its
    descendants. They are stopped first, until no new one appears, so that
    none forks away while the tree is walked."""
    tree = set()
    for _ in range(20):
        new = {pid, *descendants(pid)} - tree
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        tree |= new
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def log_tail(log, lines=20):
    """The last lines of a criu log, for a failure message."""
    if log is None:
        return "no log file"
    try:
        text = Path(log).read_text(errors="replace").splitlines()
    except OSError as e:
        return "no log at %s (%s)" % (log, e.strerror)
    return "last lines of %s:\n%s" % (log, "\n".join("    " + l for l in text[-lines:]) or "    (empty)")


class TimeLimit:
    """The time limit of one run of criu, or of a program that runs criu.

    what is the command ("criu dump"), step what the test was doing with
    it ("dump of pid 1234"), log the log file criu was told to write. On
    expiry the process is killed with its group and descendants (a hung
    "criu restore" and the tasks it forked) and an AssertionError names the
    step, the test and the limit, with the tail of the log.
    """

    def __init__(self, what, step, log=None, timeout=None):
        self.what, self.step, self.log = what, step, log
        self.timeout = CRIU_TIMEOUT if timeout is None else timeout
        self.deadline = time.monotonic() + self.timeout
        self.expired = False

    def remaining(self):
        return max(0.0, self.deadline - time.monotonic())

    def message(self, output=""):
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        msg = "%s (test step: %s%s) timed out after %gs; %s" % (
            self.what, self.step, ", in " + test if test else "", self.timeout, log_tail(self.log))
        output = output.strip()
        if output:
            msg += "\nits last output:\n" + "\n".join("    " + l for l in output.splitlines()[-10:])
        return msg

    def fail(self, popen, output=""):
        """Time is up for popen (not reaped yet): kill its tree, reap it, raise."""
        kill_tree(popen.pid)
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        raise AssertionError(self.message(output))

    def wait(self, popen):
        """popen.wait() within the limit; returns its exit status."""
        try:
            return popen.wait(timeout=self.remaining())
        except subprocess.TimeoutExpired:
            self.fail(popen)

    @contextmanager
    def watching(self, get_pid):
        """For a blocking call into code that runs criu itself (pycriu): a
        timer kills the tree of get_pid() when the time is up; the block
        then fails with the message."""
        def expire():
            self.expired = True
            pid = get_pid()
            if pid:
                kill_tree(pid)
        timer = threading.Timer(self.remaining(), expire)
        timer.daemon = True
        timer.start()
        try:
            yield self
        except Exception:
            if not self.expired:
                raise
        finally:
            timer.cancel()
            timer.join()
        if self.expired:
            raise AssertionError(self.message())


def run_bounded(cmd, what, step, log=None, timeout=None, **kw):
    """Run cmd (criu, or a program that runs criu) in a session of its own,
    stdin /dev/null, within the time limit (see TimeLimit). Returns a
    CompletedProcess with text stdout and stderr."""
    limit = TimeLimit(what, step, log, timeout)
    kw.setdefault("stdin", subprocess.DEVNULL)
    # Files, not pipes: a leftover grandchild cannot keep us reading.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, **kw)

        def read():
            out.seek(0)
            err.seek(0)
            return (out.read().decode(errors="replace"), err.read().decode(errors="replace"))
        try:
            p.wait(timeout=limit.remaining())
        except subprocess.TimeoutExpired:
            limit.fail(p, "".join(read()))
        except BaseException:
            # interrupted (make's time limit sends SIGINT): leave nothing behind
            kill_tree(p.pid)
            raise
        stdout, stderr = read()
    return subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)


def wait_report(read, ok, failure, timeout=10, popen=None):
    """A test process's view: poll read() (a JSON report the process
    rewrites atomically; FileNotFoundError or ValueError mean not yet)
    until ok(view), and return that view. Fails with the message failure
    after timeout seconds, or at once when popen (if given) has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = read()
            if ok(v):
                return v
        except (FileNotFoundError, ValueError):
            pass
        if popen is not None and popen.poll() is not None:
            raise AssertionError("%s: it exited with %d" % (failure, popen.returncode))
        time.sleep(0.02)
    raise AssertionError(failure)


@contextmanager
def mounted_tmpfs(mnt, size):
    """A tmpfs of size (e.g. "64m") mounted on mnt, a new directory, for
    the block; its content is lost when it is unmounted."""
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def make_files(d, n):
    """n small files d/f00000, d/f00001, ... (d is created); their paths."""
    d.mkdir()
    paths = []
    for i in range(n):
        p = d / ("f%05d" % i)
        p.write_text("%d\n" % i)
        paths.append(p)
    return paths


def snapshot(*dirs):
    """Each of dirs and everything below it, by path: type and mode, owner,
    inode, and a regular file's content. Two equal snapshots: nothing was
    created, removed, replaced, re-owned, re-moded or rewritten there."""
    out = {}
    for d in dirs:
        for p in [d] + sorted(d.rglob("*")):
            st = os.lstat(p)
            out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_ino,
                           p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


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

    def run(self, action, *args, images=None, env=None, wrapper=(), timeout=None, step=None):
        """criu ACTION -D images -o LOG -v4 ARGS, within the time limit
        (CRIU_TIMEOUT unless timeout is given); step says what the test is
        doing, for the message if it hangs."""
        self.runs += 1
        images = Path(images or self.images)
        images.mkdir(parents=True, exist_ok=True)
        log = self.workdir / ("%s-%d.log" % (action, self.runs))
        cmd = list(wrapper) + [self.binary, action, "-D", str(images), "-o", str(log), "-v4"] + list(args)
        proc = run_bounded(cmd, "criu " + action, step or "%s %s" % (action, " ".join(args)),
                           log=log, timeout=timeout, env=env)
        return CriuResult(proc, log)

    def dump(self, pid, *args, **kw):
        kw.setdefault("step", "dump of pid %s" % pid)
        return self.run("dump", "-t", str(pid), *args, **kw)

    def restore(self, *args, **kw):
        kw.setdefault("step", "restore -d from %s" % (kw.get("images") or self.images))
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
        # With their descendants: a restored holder's child is a new
        # process of ours too.
        for pid in self.pids:
            kill_tree(pid)
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
        return wait_report(self.view, lambda v: v["ticks"] >= n,
                           "pid %s did not reach tick %d" % (self.pid, n), timeout)

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


def dump_sleeper(procs, criu, path, *args):
    """A sleep dumped, and so killed, with --tmp-file PATH ARGS; returns its
    pid once it is gone (so that it can be restored)."""
    sleeper = procs.start(["sleep", "1000"])
    r = criu.dump(sleeper.pid, "--tmp-file", str(path), *args)
    assert r.returncode == 0, r
    sleeper.wait(timeout=10)
    wait_gone(sleeper.pid)
    return sleeper.pid


# The --tmp-file archive, read with python's tarfile: the one reader of the
# archive for every test (a test that edits it uses rewrite_archive()).
def archive(images):
    """The --tmp-file archive in images (its name says its compression)."""
    found = sorted(Path(images).glob("tmp-files.tar*.img"))
    assert len(found) == 1, "no single --tmp-file archive in %s: %s" % (images, found)
    return found[0]


def has_archive(images):
    return bool(list(Path(images).glob("tmp-files.tar*.img")))


def read_archive(images, mode="r:*"):
    """The members of the archive in images, in their order, duplicates
    kept: a list of (TarInfo, data of a regular member or None). mode
    "r:" also checks that the archive is not compressed."""
    with tarfile.open(archive(images), mode) as t:
        return [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]


def archive_names(images, mode="r:*"):
    """The sorted member names ("tmp/app/x": no leading "/")."""
    with tarfile.open(archive(images), mode) as t:
        return sorted(t.getnames())


def archive_member(images, path):
    """The data of the one regular member for path ("/tmp/app/x")."""
    found = [data for m, data in read_archive(images) if m.name == str(path).lstrip("/")]
    assert len(found) == 1 and found[0] is not None, "no single regular member for %s in %s" % (path, images)
    return found[0]


def rewrite_archive(images, change):
    """Rewrite the --tmp-file archive of images, as an attacker would:
    change(members) gets and returns a list of (TarInfo, data or None)."""
    path = Path(images) / ARCHIVE
    members = read_archive(images)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for m, data in change(members):
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buf.getvalue())


def log_of(images, name):
    """A log file of images, "" if criu did not write it."""
    p = Path(images) / name
    return p.read_text(errors="replace") if p.exists() else ""


def dump_and_wipe(app, criu, *args):
    """Start app, dump it with args, wipe its directory: (its last tick,
    its state file and log as they were at the dump)."""
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, *args)
    assert r.returncode == 0, r
    app.wait_dead()
    state = (app.dir / "state").read_bytes()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    return before, state, log


def wipe_after_dump(app):
    """After a dump that killed app: reap it, keep its log, remove its dir."""
    app.wait_dead()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    return log


def check_back(app, before, log, state=None):
    """The restored app carries on: next tick, config found by path, log
    appended at the right offset. With state (the state file's content at
    dump), also: the state file has that content plus the new record,
    written at the right offset."""
    app.restored()
    after = app.tick()
    assert after["ticks"] == before["ticks"] + 1
    assert after["conf"] == "mode=fast\n"
    assert (app.dir / "app.log").read_text() == log + "tick %d\n" % after["ticks"]
    assert after["log_offset"] == before["log_offset"] + len("tick %d\n" % after["ticks"])
    if state is not None:
        rec = b"[%d]" % after["ticks"]
        assert (app.dir / "state").read_bytes() == state[:before["state_offset"]] + rec + \
            state[before["state_offset"] + len(rec):]
        assert after["state_offset"] == before["state_offset"] + len(rec)


# The host's criu configuration files, which runtimes read: a test that
# writes one gets the host's own content (or absence) back at teardown.
RUNC_CONF = Path("/etc/criu/runc.conf")
DEFAULT_CONF = Path("/etc/criu/default.conf")


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


@pytest.fixture
def default_conf():
    """/etc/criu/default.conf for the test, the host's own put back after."""
    saved = DEFAULT_CONF.read_bytes() if DEFAULT_CONF.exists() else None
    made_dir = not DEFAULT_CONF.parent.exists()
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    yield DEFAULT_CONF
    if saved is None:
        DEFAULT_CONF.unlink(missing_ok=True)
        if made_dir:
            DEFAULT_CONF.parent.rmdir()
    else:
        DEFAULT_CONF.write_bytes(saved)

@pytest.fixture
def victim():
    """A root-only directory with a secret, outside /tmp; it must never change."""
    d = Path(tempfile.mkdtemp(prefix="criu-e2e-victim-", dir="/var/tmp"))
    (d / "secret").write_text("root only\n")
    os.chmod(d / "secret", 0o600)
    yield d
    shutil.rmtree(d)


class Holder:
    """apps/holder.py: files held open, mapped, by a child and by a thread
    (specs), as its report says; poke() makes it report again."""

    def __init__(self, procs, report, specs):
        self.report = report
        self.popen = procs.start(["/usr/bin/python3", str(APPS / "holder.py"), str(report)] + specs,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.popen.pid
        self.procs = procs
        self.view = self.wait()

    def read(self):
        v = json.loads(self.report.read_text())
        if v.get("child"):
            v["child_fds"] = json.loads((self.report.parent / (self.report.name + ".child")).read_text())
        return v

    def wait(self, timeout=10):
        return wait_report(self.read, lambda v: True, "holder %d did not report" % self.pid, timeout)

    def poke(self):
        self.report.unlink()
        child = self.report.parent / (self.report.name + ".child")
        if child.exists():
            child.unlink()
        os.kill(self.pid, signal.SIGUSR1)
        time.sleep(0.1)
        return self.wait()


# The system calls the race tests hold criu in (strace delays them), by
# number as /proc/PID/syscall shows them; on another machine those tests
# fail with a KeyError naming the call
SYSCALLS = {"x86_64": {"fanotify_mark": 301, "llistxattr": 195, "openat": 257},
            "aarch64": {"fanotify_mark": 263, "llistxattr": 12, "openat": 56}}.get(os.uname().machine, {})


def swap_while_held(criu, exchange, held):
    """A thread that waits (60 s at most) for a criu dump in the state
    held(pid) says, then calls exchange(), and again 1.5 s later; it
    appends "swapped" and "back" to the list returned with it"""
    swaps = []

    def swapper():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                try:
                    cmd = Path("/proc/%s/cmdline" % pid).read_bytes().split(b"\0")
                    if cmd[:2] != [criu.binary.encode(), b"dump"] or not held(int(pid)):
                        continue
                except (OSError, IndexError, ValueError):
                    continue
                exchange()
                swaps.append("swapped")
                time.sleep(1.5)
                exchange()
                swaps.append("back")
                return
            time.sleep(0.01)

    return threading.Thread(target=swapper), swaps


def held_in(pid, nrs, path):
    """Whether pid is in one of the syscalls nrs with path as its
    pathname argument (the first for llistxattr, the second for openat)"""
    try:
        f = Path("/proc/%d/syscall" % pid).read_text().split()
        if int(f[0]) not in nrs:
            return False
        arg = int(f[1 if int(f[0]) == SYSCALLS["llistxattr"] else 2], 16)
        with open("/proc/%d/mem" % pid, "rb") as mem:
            mem.seek(arg)
            return mem.read(len(path) + 1) == path.encode() + b"\0"
    except (OSError, ValueError, IndexError):
        return False
