"""What the pre-copy tests share (test_precopy.py, test_precopy_watch.py,
test_threats_precopy.py): the state a restore must give back, the
pre-copy's own account in the dump log, a tree started and paused
between the passes."""
import ctypes
import os
import re
import shutil
import stat
import subprocess

from conftest import APPS, kill_tree, wait_gone, wait_report


def state(d):
    """What restore must give back below d: every entry's type and mode,
    owner, mtime (ns), a file's size and content, a symlink's target, and
    which names share an inode."""
    out, inodes = {}, {}
    for p in [d] + sorted(d.rglob("*")):
        st = os.lstat(p)
        rel = str(p.relative_to(d))
        data = None
        if stat.S_ISREG(st.st_mode):
            data = p.read_bytes()
            inodes.setdefault(st.st_ino, []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            data = os.readlink(p)
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                    None if stat.S_ISDIR(st.st_mode) else st.st_size, data)
    return out, sorted(sorted(v) for v in inodes.values() if len(v) > 1)


def kept(log):
    """(kept, walked, {path archived again: why}, bytes moved) from a dump log at -v4"""
    m = re.search(r"Pre-copy: (\d+) of (\d+) entries kept, (\d+) bytes moved", log)
    assert m, log[-3000:]
    again = dict(re.findall(r"Pre-copy: (.*) archived again: (.*)", log))
    return int(m.group(1)), int(m.group(2)), again, int(m.group(3))


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


CLOCK_REALTIME_COARSE = 5


def coarse_now_ns():
    """CLOCK_REALTIME_COARSE: the clock of the pre-copy's start, and of
    file times that are not fine-grained"""
    ts = Timespec()
    assert ctypes.CDLL(None, use_errno=True).clock_gettime(CLOCK_REALTIME_COARSE, ctypes.byref(ts)) == 0
    return ts.tv_sec * 1_000_000_000 + ts.tv_nsec


def wait_ctimes_past(d):
    """Until the coarse clock is past every ctime below d: a pre-copy
    started now sees them all older than its start"""
    newest = max(os.lstat(p).st_ctime_ns for p in [d] + list(d.rglob("*")))
    wait_report(coarse_now_ns, lambda now: now > newest, "the clock did not pass the ctimes in %s" % d)


def start_app(procs, app, arg, ready, *more):
    """apps/APP ARG READY [MORE...], once it wrote its pid into READY"""
    ready.unlink(missing_ok=True)
    p = procs.start(["/usr/bin/python3", str(APPS / app), str(arg), str(ready)] + [str(m) for m in more],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # int() of an empty first line is a ValueError: not written yet
    wait_report(lambda: int(ready.read_text().split("\n")[0]), lambda pid: pid == p.pid,
                "%s %d did not start" % (app, p.pid), 20, popen=p)
    return p


def restores_as_frozen(criu, procs, p, d, images=None):
    """After a dump that killed p: d is the state at the freeze. Remove d,
    restore with the tree left stopped (it would change d), and compare;
    then kill the restored tree."""
    frozen = state(d)
    shutil.rmtree(d)
    r = criu.restore("--leave-stopped", images=images)
    assert r.returncode == 0, r
    procs.track(p.pid)
    assert state(d) == frozen
    kill_tree(p.pid)
    wait_gone(p.pid)


def between_the_passes(workdir):
    """A tar, first on PATH for criu, that once the pre-copy's tar is done
    (the only one with --ignore-failed-read) asks the churning tree
    ($CHURN_PID, if set) for one more step and waits until it is made (a
    line in the fifo CHURN_ACK): the tree
    changes between the pre-copy and the freeze in every dump, whatever
    the timing. Each step made so is appended to $CHURN_STEPS. Returns the
    environment for criu, to which CHURN_PID is added."""
    fake = workdir / "bin"
    fake.mkdir()
    ack = workdir / "churn.ack"
    os.mkfifo(ack)
    (fake / "tar").write_text(
        '#!/bin/sh\n'
        'case "$*" in *--ignore-failed-read*)\n'
        '\trc=0; %s "$@" || rc=$?\n'
        '\t{ [ -z "$CHURN_PID" ] || kill -USR1 "$CHURN_PID"; } && read step < "$CHURN_ACK" && '
        'echo "$step" >> "$CHURN_STEPS" || exit 2\n'
        '\texit $rc;;\n'
        'esac\n'
        'exec %s "$@"\n' % (shutil.which("tar"), shutil.which("tar")))
    (fake / "tar").chmod(0o755)
    steps = workdir / "churn.steps"
    env = dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"]), CHURN_ACK=str(ack), CHURN_STEPS=str(steps))
    return env, ack, steps
