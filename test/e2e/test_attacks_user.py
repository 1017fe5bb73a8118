"""A local unprivileged user against a root dump and restore (issues 12, 20).

Restore runs as root and writes where other users can write: /tmp. A
real user made by the test (useradd) tries what reviews found to work
against the path-based restore: a parent directory created before
restore, a directory swapped for a symlink to a root-only directory with
RENAME_EXCHANGE during restore, a race for the saved name in the sticky
/tmp; symlinks put on a saved path or its parent. Each race is repeated
many times; the victim directory must never change, and restore either
refuses, naming the directory and its owner, or puts back exactly the
saved files.

Issue 20: the user owns the directory of a saved path and the restore
root has no /tmp that root can write (a read-only root): the old restore
staged in the user's directory, where an inotify hijacker swapped the
stage. Rule: a staging directory only in a directory that only root can
change, used by fd; otherwise the restore is refused, naming what to do.
An exchanger swaps every name root makes in the user's directory for a
symlink to a root 0600 file (the old copy path chmod'ed it 0666); fifos
renamed over saved files while the frozen dump reads them (the old dump
hung with the tree frozen).
"""
import ctypes
import json
import mmap
import os
import pwd
import select
import signal
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (APPS, CRIU, CRIU_TIMEOUT, SYSCALLS, App, alive, dump_sleeper, held_in, kill_tree, reap,
                      snapshot, swap_while_held, wait_gone, wait_report)



# One user per pytest run: the fixture's teardown kills every process of
# the user, which must not hit a run of these tests by someone else on the
# same machine
USER = "criu-e2e-atk-%d" % os.getpid()


@pytest.fixture(scope="module")
def attacker():
    made = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True)
        made = True
    pw = pwd.getpwnam(USER)
    yield pw
    # The tests kill what they started; anything of the user's left (a
    # process not reaped yet) must be gone before the user is.
    deadline = time.time() + 10
    while True:
        left = [int(d) for d in os.listdir("/proc") if d.isdigit() and owned_by(int(d), pw.pw_uid)]
        if not left:
            break
        assert time.time() < deadline, "processes of %s still there: %s" % (USER, left)
        for pid in left:
            kill_tree(pid)
        reap()
        time.sleep(0.05)
    if made:
        subprocess.run(["userdel", USER], check=True)


def owned_by(pid, uid):
    try:
        return os.stat("/proc/%d" % pid).st_uid == uid
    except FileNotFoundError:
        return False


def as_user(pw, argv, **kw):
    return ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--clear-groups",
            "--no-new-privs"] + argv


@pytest.fixture
def saved(procs, criu):
    """Dump a task with --tmp-file /tmp/criu-e2e-atk-XXX/app (a tree of
    root's files), then remove /tmp/criu-e2e-atk-XXX: it is missing at
    restore, as after a reboot. Returns (top, app dir, files)."""
    top = Path(tempfile.mkdtemp(prefix="criu-e2e-atk-", dir="/tmp"))
    os.chmod(top, 0o755)
    app = top / "app"
    (app / "sub").mkdir(parents=True)
    files = {}
    for i in range(300):
        p = app / "sub" / ("f%03d" % i)
        p.write_text("saved %d\n" % i)
        files[p] = "saved %d\n" % i
    sleeper = procs.start(["sleep", "1000"])
    r = criu.dump(sleeper.pid, "--tmp-file", str(app))
    assert r.returncode == 0, r
    sleeper.wait(timeout=10)
    wait_gone(sleeper.pid)
    shutil.rmtree(top)
    yield top, app, files, sleeper.pid
    shutil.rmtree(top, ignore_errors=True)


def restore_once(criu, procs, pid):
    r = criu.restore()
    if r.returncode == 0:
        procs.track(pid)
        kill_tree(pid)
        wait_gone(pid)
    return r


class Attacker:
    """apps/attacker.py, run as the user. counts() is what it did so far
    (attempts, wins, failures), read from memory it shares with the test;
    finish() stops it and returns its report (failures by call and
    errno). It exits at once on an errno its attack cannot meet: that
    fails the test."""

    def __init__(self, procs, pw, args):
        self.mfd = os.memfd_create("attacker-counts")
        os.ftruncate(self.mfd, 64)
        self.shm = mmap.mmap(self.mfd, 64, mmap.MAP_SHARED)
        self.shared = (ctypes.c_uint64 * 3).from_buffer(self.shm)
        # The script's own copy is in a root-only directory: pass its text
        source = (APPS / "attacker.py").read_text()
        self.p = procs.start(as_user(pw, ["/usr/bin/python3", "-c", source, str(self.mfd)] + args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=[self.mfd])
        self.pid = self.p.pid
        line = self.p.stdout.readline()
        assert line == b"ready\n", (line, self.p.stderr.read())

    def counts(self):
        """(attempts, wins, failures) so far; the attacker must still run"""
        if self.p.poll() is not None:
            raise AssertionError("the attacker exited %d: %s" % (self.p.returncode, self.p.stderr.read()))
        return tuple(self.shared)

    def stopped(self):
        with open("/proc/%d/stat" % self.pid) as f:
            return f.read().split(") ")[1][0] == "T"

    def stop(self):
        os.kill(self.pid, signal.SIGSTOP)
        wait_report(self.stopped, bool, "the attacker did not stop", popen=self.p)

    def hold(self, sig, held):
        """SIGUSR1: hold a symlink at the name, SIGUSR2: a directory;
        returns once the attacker stopped itself holding it (held() says
        so; a stop without it, seen now and then, is retried)"""
        for _ in range(20):
            os.kill(self.pid, sig)
            wait_report(self.stopped, bool, "the attacker did not win the name", popen=self.p)
            if held():
                return
            self.go_on()
        raise AssertionError("the attacker never held the name")

    def go_on(self):
        os.kill(self.pid, signal.SIGCONT)

    def finish(self):
        os.kill(self.pid, signal.SIGTERM)
        os.kill(self.pid, signal.SIGCONT)
        out, err = self.p.communicate(timeout=10)
        assert self.p.returncode == 0, (self.p.returncode, out, err)
        report = json.loads(out.decode().splitlines()[-1])
        print("attacker:", report)
        return report


def test_parent_made_by_another_user_is_refused(attacker, victim, saved, criu, procs):
    top, app, files, pid = saved
    before = snapshot(victim)
    # The user is first: /tmp/criu-e2e-atk-XXX is theirs, app a symlink to the victim.
    subprocess.run(as_user(attacker, ["sh", "-c", 'mkdir -m 0777 "$1" && ln -s "$2" "$1/app"', "-",
                                      str(top), str(victim)]), check=True)
    r = restore_once(criu, procs, pid)
    assert r.returncode != 0
    assert ("Refusing to restore %s: directory %s is owned by uid %d, not by root nor by the saved owner 0"
            % (app, top, attacker.pw_uid)) in r.log, r.log[-3000:]
    assert "Nothing of the --tmp-file archive was restored" in r.log
    assert snapshot(victim) == before
    assert os.readlink(app) == str(victim)
    assert not alive(pid)


def test_directory_swapped_during_restore_never_reaches_the_victim(attacker, victim, saved, criu, procs):
    """The user owns the missing parent and exchanges app with a symlink to
    the victim in a tight loop while root restores, 50 times. Every
    restore runs while exchanges are made: counted from the attacker's
    own count of the renameat2() calls that succeeded, none may fail."""
    top, app, files, pid = saved
    before = snapshot(victim)
    subprocess.run(as_user(attacker, ["sh", "-c", 'mkdir -m 0777 "$1" "$1/app" && ln -s "$2" "$1/link"', "-",
                                      str(top), str(victim)]), check=True)
    swapper = Attacker(procs, attacker, ["swap", str(top)])
    during = []
    try:
        for _ in range(50):
            made = swapper.counts()[1]
            r = restore_once(criu, procs, pid)
            during.append(swapper.counts()[1] - made)
            assert r.returncode != 0
            assert "Refusing to restore %s: directory %s is owned by uid %d" % (app, top, attacker.pw_uid) \
                in r.log, r.log[-3000:]
            assert snapshot(victim) == before
    finally:
        report = swapper.finish()
    assert snapshot(victim) == before
    print("exchanges made during each restore:", during)
    assert report["failures"] == 0, report
    # The race ran through every restore, many times over
    assert min(during) > 0 and sum(during) >= 50 * 100, during


def test_race_for_the_name_in_sticky_tmp(attacker, victim, saved, criu, procs):
    """The saved directory's parent sits in the sticky /tmp: the user races
    root for the name with a symlink to the victim and a directory of
    their own, over and over, during 100 restores. In a fifth of them the
    user holds a symlink at the name (stopped while holding it, so the
    restore certainly meets it), in a fifth a directory of theirs: those
    restores refuse, naming the reason. In a fifth the user is stopped
    with the name free: those restore exactly root's files. In the rest
    the user races freely: each either refuses or restores exactly root's
    files. The victim never changes."""
    top, app, files, pid = saved
    before = snapshot(victim)
    squatter = Attacker(procs, attacker, ["squat", str(top), str(victim)])
    outcomes = {"held symlink": 0, "held directory": 0, "name free": 0, "raced, restored": 0,
                "raced, refused": 0}
    won_during_race = 0
    try:
        for i in range(100):
            kind = i % 5
            if kind == 0:
                squatter.hold(signal.SIGUSR1, lambda: os.path.islink(top) and os.readlink(top) == str(victim)
                              and os.lstat(top).st_uid == attacker.pw_uid)
            elif kind == 1:
                squatter.hold(signal.SIGUSR2, lambda: os.path.isdir(top) and not os.path.islink(top)
                              and os.lstat(top).st_uid == attacker.pw_uid)
            elif kind == 2:
                squatter.stop()
                subprocess.run(["rm", "-rf", str(top)], check=True)
            won = squatter.counts()[1] if kind > 2 else 0
            r = restore_once(criu, procs, pid)
            if kind > 2:
                won_during_race += squatter.counts()[1] - won
            if kind == 0:
                assert r.returncode != 0
                assert "Can't restore %s: %s is not a directory" % (app, top) in r.log, r.log[-3000:]
                outcomes["held symlink"] += 1
            elif kind == 1:
                assert r.returncode != 0
                assert ("Refusing to restore %s: directory %s is owned by uid %d" % (app, top, attacker.pw_uid)
                        in r.log), r.log[-3000:]
                outcomes["held directory"] += 1
            if r.returncode == 0:
                outcomes["name free" if kind == 2 else "raced, restored"] += 1
                st = os.lstat(top)
                assert st.st_uid == 0 and not os.path.islink(top)
                for p, content in files.items():
                    assert p.read_text() == content
                    assert os.lstat(p).st_uid == 0
            elif kind > 1:
                assert kind > 2, r.log[-3000:]  # the name was free: no reason to refuse
                outcomes["raced, refused"] += 1
                assert "Refusing to restore" in r.log or "is not a directory" in r.log, r.log[-3000:]
            assert snapshot(victim) == before
            # Root takes the name back for the next round, whatever is there.
            subprocess.run(["rm", "-rf", str(top)], stderr=subprocess.DEVNULL)
            if kind < 3:
                squatter.go_on()
    finally:
        report = squatter.finish()
    assert snapshot(victim) == before
    print("outcomes:", outcomes, "names won during the free races:", won_during_race)
    assert outcomes["held symlink"] == outcomes["held directory"] == outcomes["name free"] == 20, outcomes
    assert outcomes["raced, restored"] + outcomes["raced, refused"] == 40, outcomes
    # The user did win the name, also while the free restores ran
    assert report["wins"] >= 1000 and won_during_race >= 40, (report, won_during_race)


def test_symlink_on_the_target_is_not_followed(app, criu, tmpdir_tmp):
    """/tmp/x made a symlink elsewhere after dump: nothing is written through it."""
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    elsewhere = tmpdir_tmp / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(app.dir)
    app.dir.symlink_to(elsewhere)

    r = criu.restore()
    assert r.returncode != 0
    assert "Can't restore directory %s: something else is in its place" % app.dir in r.output, r
    assert os.listdir(elsewhere) == []


def test_symlink_on_a_parent_is_not_followed(procs, criu, tmpdir_tmp, workdir):
    app = App(procs, tmpdir_tmp / "parent" / "app", workdir / "report.json")
    app.prepare()
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    elsewhere = tmpdir_tmp / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(tmpdir_tmp / "parent")
    (tmpdir_tmp / "parent").symlink_to(elsewhere)

    r = criu.restore()
    assert r.returncode != 0
    assert "Can't restore %s: %s is not a directory" % (app.dir, tmpdir_tmp / "parent") in r.output, r
    assert os.listdir(elsewhere) == []


# What both attackers below share: a user's inotify watch on a directory,
# the names created in it as they come, counts printed at SIGTERM.
INOTIFY = r'''
import ctypes, os, signal, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
counts = {}
def report(*a):
    print(" ".join("%s %d" % kv for kv in counts.items()), flush=True)
    os._exit(0)
def created(d, prefix):
    """Names starting with prefix created in d, as inotify reports them."""
    fd = libc.inotify_init1(0)
    if fd < 0 or libc.inotify_add_watch(fd, d.encode(), 0x100) < 0:  # IN_CREATE
        sys.exit("inotify: errno %d" % ctypes.get_errno())
    signal.signal(signal.SIGTERM, report)
    print("ready", flush=True)
    while True:
        buf = os.read(fd, 65536)
        off = 0
        while off < len(buf):
            wd, mask, cookie, ln = struct.unpack_from("iIII", buf, off)
            name = buf[off + 16:off + 16 + ln].rstrip(b"\0").decode()
            off += 16 + ln
            if name.startswith(prefix):
                yield name
'''


# Every directory criu makes in D as its stage is swapped for one of the
# user's, holding a symlink to where root should write.
HIJACKER = INOTIFY + r'''
d, target = sys.argv[1], sys.argv[2]
counts.update(seen=0, hijacked=0)
for name in created(d, ".criu-tmp-files."):
    counts["seen"] += 1
    try:
        os.rename(os.path.join(d, name), os.path.join(d, ".moved%d" % counts["seen"]))
        os.mkdir(os.path.join(d, name), 0o777)
        os.symlink(target, os.path.join(d, name, "tmp"))
        counts["hijacked"] += 1
    except OSError as e:
        print("swap failed: %s" % e, flush=True)
'''


# In a private mount namespace: "/" read-only there (so no /tmp nor root
# for a stage), the user's directory and the images writable; the user's
# hijacker watches, then criu restores. criu's kernel probes need a
# writable /tmp, or their cache on a tmpfs /run: made before "/" is ro.
NS_SCRIPT = r'''
set -eu
data=$1 images=$2 criu=$3 uid=$4 gid=$5 victim=$6 limit=$7
mount --make-rprivate /
mount -t tmpfs -o mode=0755 criu-e2e-run /run
timeout "$limit" "$criu" check > /dev/null 2>&1 || true
test -s /run/criu.kdat || { echo "no kerndat cache"; exit 2; }
mount -o remount,bind,ro /
for d in "$data" "$images"; do mount --bind "$d" "$d"; mount -o remount,bind,rw "$d"; done
setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs \
	/usr/bin/python3 -c "$HIJACKER" "$data" "$victim" > "$images/hijacker.out" 2>&1 &
hj=$!
for _ in $(seq 100); do grep -q ready "$images/hijacker.out" && break; sleep 0.05; done
grep -q ready "$images/hijacker.out" || { echo "hijacker not ready"; kill $hj; exit 2; }
rc=0
timeout "$limit" "$criu" restore -D "$images" -o restore.log -v4 || rc=$?
kill -TERM $hj; wait $hj || true
echo "criu restore: $rc"
cat "$images/hijacker.out"
'''


@pytest.fixture
def user_dir_saved(attacker, procs, criu):
    """A sleeper dumped with --tmp-file TOP/data/app, where data and app
    are the attacker's (app is saved with the attacker as its owner)."""
    top = Path(tempfile.mkdtemp(prefix="criu-e2e-thr-", dir="/tmp"))
    os.chmod(top, 0o755)
    data = top / "data"
    app = data / "app"
    app.mkdir(parents=True)
    for i in range(20):
        (app / ("f%02d" % i)).write_text("saved %d\n" % i)
    for p in [data, app] + list(app.iterdir()):
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    sleeper_pid = dump_sleeper(procs, criu, app)
    shutil.rmtree(app)
    yield top, data, app, sleeper_pid
    shutil.rmtree(top, ignore_errors=True)


def test_no_stage_in_a_directory_of_another_user(attacker, user_dir_saved, criu, victim_dir):
    """The user's hijacker is armed (inotify) in the only writable
    directory on the way: the old code staged there and lost the stage
    every time. Now restore refuses before making anything there, and
    says what to do."""
    top, data, app, pid = user_dir_saved
    before = sorted(os.listdir(victim_dir))
    env = dict(os.environ, HIJACKER=HIJACKER)
    out = subprocess.run(["unshare", "-m", "sh", "-c", NS_SCRIPT, "-", str(data), str(criu.images), CRIU,
                          str(attacker.pw_uid), str(attacker.pw_gid), str(victim_dir), str(int(CRIU_TIMEOUT))],
                         env=env, capture_output=True, text=True, timeout=CRIU_TIMEOUT + 30)
    assert out.returncode == 0, out.stdout + out.stderr
    log = (Path(criu.images) / "restore.log").read_text()
    # The attacker was there and watching: ready, and it reports counts
    assert "seen 0 hijacked 0" in out.stdout, out.stdout + log[-3000:]
    assert "criu restore: 0" not in out.stdout
    assert "no directory under /" in log and "to stage them in that only root can change" in log, log[-3000:]
    assert "No staging directory in /%s: uid %d" % (str(data)[1:], attacker.pw_uid) in log, log[-3000:]
    # Nothing of root's in the user's directory, nothing in the victim
    assert os.listdir(data) == []
    assert sorted(os.listdir(victim_dir)) == before


@pytest.fixture
def victim_dir():
    d = Path(tempfile.mkdtemp(prefix="criu-e2e-victim-", dir="/var/tmp"))
    (d / "secret").write_text("root only\n")
    yield d
    shutil.rmtree(d)


# Exchanges every ".criu-tmp-file.*" name made in a directory with a
# symlink to the victim (RENAME_EXCHANGE), as soon as inotify reports it:
# what root then does by name there lands on the victim.
EXCHANGER = INOTIFY + r'''
d, victim = sys.argv[1], sys.argv[2]
counts.update(seen=0, swapped=0)
for name in created(d, ".criu-tmp-file."):
    counts["seen"] += 1
    decoy = os.path.join(d, ".decoy%d" % counts["seen"])
    os.symlink(victim, decoy)
    if libc.renameat2(-100, os.path.join(d, name).encode(), -100, decoy.encode(), 2) == 0:  # RENAME_EXCHANGE
        counts["swapped"] += 1
    else:
        os.unlink(decoy)
'''


def start_as(pw, script, *args):
    p = subprocess.Popen(as_user(pw, ["/usr/bin/python3", "-c", script] + list(args)), stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline() == "ready\n"
    return p


def stop(p):
    p.terminate()
    out = p.communicate(timeout=10)[0]
    return out


@pytest.fixture
def user_tmpfs(attacker):
    """TOP/u: a tmpfs of the attacker's (so placing there copies, from a
    stage on /tmp), holding app, the attacker's saved directory."""
    top = Path(tempfile.mkdtemp(prefix="criu-e2e-thr-", dir="/tmp"))
    os.chmod(top, 0o755)
    mnt = top / "u"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755,uid=%d,gid=%d" %
                    (attacker.pw_uid, attacker.pw_gid), "criu-e2e-user", str(mnt)], check=True)
    try:
        yield top, mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        shutil.rmtree(top)


def test_fifo_copied_into_a_users_directory_never_chmods_elsewhere(attacker, user_tmpfs, procs, criu,
                                                                    victim_dir):
    """Placing copies (the stage is on another filesystem): 300 fifos of
    mode 0666 go back into the attacker's own directory, where an
    exchanger swaps each new name for a symlink to a root 0600 file. The
    old code chmod'ed by name, through the symlink: the victim became
    0666. Now every change is on an fd of the inode made, checked."""
    top, mnt = user_tmpfs
    app = mnt / "app"
    app.mkdir()
    for i in range(300):
        os.mkfifo(app / ("p%03d" % i), 0o666)
        os.chmod(app / ("p%03d" % i), 0o666)
    for p in [app] + list(app.iterdir()):
        os.chown(p, attacker.pw_uid, attacker.pw_gid)
    secret = victim_dir / "secret"
    os.chmod(secret, 0o600)
    sleeper_pid = dump_sleeper(procs, criu, app)
    for p in app.iterdir():
        p.unlink()

    ex = start_as(attacker, EXCHANGER, str(app), str(secret))
    try:
        r = criu.restore()
    finally:
        counts = stop(ex)
    if r.returncode == 0:
        procs.track(sleeper_pid)
        kill_tree(sleeper_pid)
    seen, swapped = [int(w) for w in counts.split()[1::2]]
    # The attack ran: names were made in its directory, and swapped
    assert seen >= 1 and swapped >= 1, counts
    assert os.stat(secret).st_mode & 0o7777 == 0o600
    assert os.stat(secret).st_uid == 0
    assert (secret).read_text() == "root only\n"
    # Refused when a swap came before criu opened what it made; after
    # that, the user only moved their own entries in their own directory
    assert r.returncode == 0 or "what was made in its directory was replaced" in r.log, r.log[-3000:]


def test_fifo_copied_into_a_users_directory(attacker, user_tmpfs, procs, criu):
    """The same copy with no one in the way: fifos back with their modes
    and owner, in the attacker's directory on another filesystem."""
    top, mnt = user_tmpfs
    app = mnt / "app"
    app.mkdir()
    for i in range(10):
        os.mkfifo(app / ("p%d" % i))
        os.chmod(app / ("p%d" % i), 0o640 + i % 2)
    (app / "link").symlink_to("p0")
    for p in [app] + list(app.iterdir()):
        os.chown(p, attacker.pw_uid, attacker.pw_gid, follow_symlinks=False)
    before = {p.name: os.lstat(p) for p in app.iterdir()}
    sleeper_pid = dump_sleeper(procs, criu, app)
    for p in app.iterdir():
        p.unlink()
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(sleeper_pid)
    kill_tree(sleeper_pid)
    after = {p.name: os.lstat(p) for p in app.iterdir()}
    assert sorted(after) == sorted(before)
    for name, st in before.items():
        a = after[name]
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    assert os.readlink(app / "link") == "p0"


# As soon as FIRST is opened (by tar or by the manifest child, once it has
# listed the directory), renames a fifo over every other file of the
# directory, from the end of its listing backwards.
FIFO_SWAPPER = r'''
import ctypes, os, signal, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
d, first = sys.argv[1], sys.argv[2]
fd = libc.inotify_init1(0)
if fd < 0 or libc.inotify_add_watch(fd, os.path.join(d, first).encode(), 0x20) < 0:
    sys.exit("inotify: errno %d" % ctypes.get_errno())
names = [n for n in os.listdir(d) if n != first]
print("ready", flush=True)
os.read(fd, 4096)
swapped = 0
for n in reversed(names):
    os.mkfifo(os.path.join(d, ".f"))
    os.rename(os.path.join(d, ".f"), os.path.join(d, n))
    swapped += 1
print("swapped %d" % swapped, flush=True)
'''


def test_fifo_put_over_a_saved_file_does_not_hang_the_dump(attacker, procs, criu, tmpdir_tmp):
    """A user outside the tree puts fifos where the walk saw regular files,
    while criu reads them (the tree is frozen). The old code's open()
    blocked on the first fifo: criu waited, the tree stayed frozen until
    criu was killed. Now the open never blocks and checks the inode: the
    dump fails, naming the file, and the tree runs on."""
    os.chmod(tmpdir_tmp, 0o755)
    sleeper = procs.start(["sleep", "1000"])
    # A round where the swaps came before the walk listed the directory is
    # a legitimate dump of fifos: play again, until the walk saw the files
    caught = 0
    for rnd in range(8):
        app = Path(tmpdir_tmp) / ("app%d" % rnd)
        app.mkdir()
        for i in range(200):
            (app / ("f%03d" % i)).write_bytes(os.urandom(256 << 10))
        for p in [app] + list(app.iterdir()):
            os.chown(p, attacker.pw_uid, attacker.pw_gid)
        sw = start_as(attacker, FIFO_SWAPPER, str(app), os.listdir(app)[0])
        try:
            r = criu.dump(sleeper.pid, "--tmp-file", str(app), "--tmp-file-compress", "none", "-R",
                          images=criu.images / str(rnd), timeout=60, step="dump while fifos replace the saved files")
        finally:
            out = sw.communicate(timeout=30)[0]
        assert "swapped 199" in out, (out, r.log[-2000:])
        assert alive(sleeper.pid)
        if r.returncode != 0:
            assert "was replaced by another file while it was read" in r.log or \
                "changed while it was saved" in r.log or "file changed as we read it" in r.log, r.log[-3000:]
            caught += 1
            break
    assert caught, "in 8 rounds the swaps always came before the walk"
    assert alive(sleeper.pid)
    # Not frozen: the tree runs on
    state = Path("/proc/%d/stat" % sleeper.pid).read_text().split(")")[1].split()[0]
    assert state in ("S", "R"), state



# The attacker's exchange of u/sub and u/link (RENAME_EXCHANGE), at each
# line on its standard input
SUB_SWAPPER = r'''
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
u = sys.argv[1].encode()
print("ready", flush=True)
for line in sys.stdin:
    ok = libc.renameat2(-100, u + b"/sub", -100, u + b"/link", 2) == 0
    print("swapped" if ok else "failed %d" % ctypes.get_errno(), flush=True)
'''


def fanotify(flags, mask, path):
    """A fanotify group (fanotify_init(flags)) with mask marked on path"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    fan = libc.fanotify_init(flags, os.O_RDONLY)
    assert fan >= 0, os.strerror(ctypes.get_errno())
    assert libc.fanotify_mark(fan, 0x1, mask, -100, str(path).encode()) == 0, os.strerror(ctypes.get_errno())  # ADD
    return fan


def openers(fan):
    """The commands of the processes that opened the file of fan's mark
    (FAN_OPEN, a FAN_NONBLOCK group) so far"""
    EVENT = OpenHeld.EVENT
    seen = []
    while True:
        try:
            buf = os.read(fan, 4096)
        except BlockingIOError:
            return seen
        for off in range(0, len(buf), EVENT.size):
            _, _, _, _, _, fd, pid = EVENT.unpack_from(buf, off)
            os.close(fd)
            try:
                seen.append(Path("/proc/%d/comm" % pid).read_text().strip())
            except OSError:
                seen.append("pid %d, gone" % pid)


class OpenHeld:
    """A fanotify permission mark on path: the first open of it by a
    criu dump waits until exchange() has run, and exchange() runs again
    1.5 s later, or at stop() if that comes first; every other open is
    let through at once. "swapped" and "back" are appended to swaps.
    After stop(), every open is let through."""
    EVENT = struct.Struct("IBBHQii")  # struct fanotify_event_metadata

    def __init__(self, criu, path, exchange):
        self.fan = fanotify(0x1 | 0x4, 0x10000, path)  # FAN_CLOEXEC | FAN_CLASS_CONTENT, FAN_OPEN_PERM
        self.criu, self.exchange, self.swaps, self.stopping = criu, exchange, [], False
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self):
        back = None
        while not self.stopping or back:
            if back and (self.stopping or time.monotonic() >= back):
                self.exchange()
                self.swaps.append("back")
                back = None
            if not select.select([self.fan], [], [], 0.05)[0]:
                continue
            buf = os.read(self.fan, 4096)
            for off in range(0, len(buf), self.EVENT.size):
                _, _, _, _, _, fd, pid = self.EVENT.unpack_from(buf, off)
                try:
                    cmd = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")[:2]
                except OSError:
                    cmd = []
                if not self.swaps and cmd == [self.criu.binary.encode(), b"dump"]:
                    self.exchange()
                    self.swaps.append("swapped")
                    back = time.monotonic() + 1.5
                os.write(self.fan, struct.pack("iI", fd, 1))  # FAN_ALLOW
                os.close(fd)

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=30)
        os.close(self.fan)  # lets through any open still waiting


@pytest.mark.parametrize("precopy", [False, True], ids=["frozen", "precopy"])
def test_directory_swapped_during_the_walk_is_not_listed(attacker, procs, criu, tmpdir_tmp, precopy):
    """A user outside the tree owns a directory u in a saved path, and
    swaps u/sub for a symlink to a root-only directory just before criu's
    walk opens u/sub, and back 1.5 s later. The frozen walk (the manifest
    child's) is held by a fanotify permission event at its open of the
    file it reads before u/sub, for its checksum; the pre-copy's walk is
    held at its openat() of u/sub by strace. The old walk opened each directory by name: it listed the
    root-only directory, and put its file's name in the manifest or had
    tar archive it. Now each directory is opened without following a
    symlink and checked to be the inode the walk saw: the frozen walk
    fails the dump naming u/sub, the pre-copy leaves u/sub to the frozen
    pass, no process opens the root-only file (a fanotify watch), no
    name nor byte of it is in the images, and the tree runs on."""
    strace = shutil.which("strace")
    assert strace, "strace is needed to hold the walk's openat()"
    os.chmod(tmpdir_tmp, 0o755)
    secret = "root-only-%s" % os.urandom(6).hex()
    hidden = tmpdir_tmp / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / secret).write_bytes(secret.encode() * 64)
    os.chmod(hidden / secret, 0o600)
    app = tmpdir_tmp / "app"
    u = app / "u"
    (u / "sub").mkdir(parents=True)
    (u / "sub/own").write_text("own\n")
    os.symlink(str(hidden), u / "link")
    # The walk goes through u in the order readdir() lists it: the frozen
    # walk is held at the file listed last before sub
    n = 0
    while os.listdir(u).index("sub") < 1 or os.listdir(u)[os.listdir(u).index("sub") - 1] == "link":
        (u / ("f%d" % n)).write_text("f\n")
        n += 1
    before = u / os.listdir(u)[os.listdir(u).index("sub") - 1]
    for p in [u, u / "sub/own"] + list(u.iterdir()):
        os.lchown(p, attacker.pw_uid, attacker.pw_gid)
    sleeper = procs.start(["sleep", "1000"])
    sub = "/proc/%d/root%s" % (sleeper.pid, u / "sub")
    watch = fanotify(0x1 | 0x2, 0x20, hidden / secret)  # FAN_CLOEXEC | FAN_NONBLOCK, FAN_OPEN
    swapper = subprocess.Popen(as_user(attacker, ["/usr/bin/python3", "-c", SUB_SWAPPER, str(u)]),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.track(swapper.pid)
    assert swapper.stdout.readline() == "ready\n"

    def exchange():
        swapper.stdin.write("swap\n")
        swapper.stdin.flush()
        assert swapper.stdout.readline() == "swapped\n"

    if precopy:
        t, swaps = swap_while_held(criu, exchange, lambda pid: held_in(pid, (SYSCALLS["openat"],), sub))
        t.start()
        wrapper = [strace, "-o", "/dev/null", "-P", sub, "-e", "trace=openat",
                   "-e", "inject=openat:delay_enter=1000000:when=1"]
        more = ["--tmp-file-precopy"]
    else:
        held = OpenHeld(criu, before, exchange)
        swaps, wrapper, more = held.swaps, [], []
    try:
        r = criu.run("dump", "-t", str(sleeper.pid), "--tmp-file", str(app), "--tmp-file-compress", "none", "-R",
                     *more, wrapper=wrapper, step="dump of pid %d while u/sub is swapped" % sleeper.pid)
    finally:
        if precopy:
            t.join()
        else:
            held.stop()
        swapper.stdin.close()
        swapper.wait(timeout=10)
        opened = openers(watch)
        os.close(watch)
    assert swaps == ["swapped", "back"], (swaps, r.log[-2000:])
    assert not opened, "the root-only file was opened by %s" % opened
    leaked = [p.name for p in criu.images.iterdir() if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked, "the root-only file's name or bytes are in %s" % leaked
    if precopy:
        assert r.returncode == 0, r.log[-3000:]
        assert "%s is gone or another entry now: not walked" % sub in r.log, r.log[-3000:]
    else:
        assert r.returncode != 0
        assert "%s changed while it was saved" % (u / "sub") in r.log, r.log[-3000:]
    assert alive(sleeper.pid)
    state = Path("/proc/%d/stat" % sleeper.pid).read_text().split(")")[1].split()[0]
    assert state in ("S", "R"), state
