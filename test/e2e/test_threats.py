"""Issue 20: the classes of attack, each against the rule that stops it.

- A local user owns the directory of a saved path, and the restore root
  has no /tmp that root can write (a read-only root): the old code made
  its staging directory in the user's directory, where the user swapped
  it for their own while tar wrote into it by name. Rule: a staging
  directory only in a directory that only root can change, used by fd;
  otherwise the restore is refused, naming what to do.
- The images hold a member of a type the manifest cannot describe (GNU
  tar extracts a "contiguous" member as a regular file, and listed it
  as 'C', outside the size bound). Rule: criu reads every member header
  on its way to tar, and only a member of its manifest entry's type, name
  and size passes.
- A chrooted tree: dump resolves paths in its root; restore put them
  under the host's "/". Rule: the manifest records the tree's root and
  restore writes under it, or refuses.
"""
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CRIU, CRIU_TIMEOUT, alive, dump_sleeper, kill_tree, rewrite_archive, wait_gone
from test_attacks import as_user, attacker  # noqa: F401  (the fixture)

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


def test_stage_next_to_a_root_directory_restores(procs, criu, tmpdir_tmp):
    """The legitimate case: a saved path in a root-owned directory
    restores, and the log says where it staged (nearest root-only
    directory on the way, on the saved path's filesystem)."""
    app = Path(tmpdir_tmp) / "app"
    app.mkdir()
    (app / "f").write_text("saved\n")
    sleeper_pid = dump_sleeper(procs, criu, app)
    shutil.rmtree(app)
    r = criu.restore()
    assert r.returncode == 0, r
    procs.track(sleeper_pid)
    assert (app / "f").read_text() == "saved\n"
    assert "Staging the --tmp-file archive in %s/.criu-tmp-files." % tmpdir_tmp in r.log, r.log[-3000:]
    kill_tree(sleeper_pid)


def test_contiguous_member_is_refused(procs, criu, tmpdir_tmp):
    """A member of type '7' (contiguous), which GNU tar extracts as a
    regular file, made 4 MiB where the manifest allows 6 bytes."""
    app = Path(tmpdir_tmp) / "app"
    app.mkdir()
    (app / "f").write_text("saved\n")
    dump_sleeper(procs, criu, app)
    shutil.rmtree(app)

    def contiguous(members):
        out = []
        for m, data in members:
            if m.isfile():
                m.type = tarfile.CONTTYPE
                data = b"x" * (4 << 20)
                m.size = len(data)
            out.append((m, data))
        return out
    rewrite_archive(criu.images, contiguous)
    r = criu.restore()
    assert r.returncode != 0
    assert "as a member of type '7' that does not match its manifest (type)" in r.log, r.log[-3000:]
    assert not app.exists()


BUSYBOX = "/bin/busybox"


def test_chrooted_tree_is_restored_under_its_root(procs, criu):
    """A tree chrooted to JAIL saves JAIL/tmp/x/app as /tmp/x/app. The
    host has its own /tmp/x/app/file (root's, 0600): the old restore wrote
    the tree's file over it. Now it goes under JAIL, the host's stays."""
    name = "criu-e2e-chroot-%d" % os.getpid()
    jail = Path(tempfile.mkdtemp(prefix="criu-e2e-jail-", dir="/var/tmp"))
    host = Path("/tmp") / name / "app"
    try:
        (jail / "bin").mkdir()
        shutil.copy(BUSYBOX, jail / "bin/busybox")
        inside = jail / "tmp" / name / "app"
        inside.mkdir(parents=True)
        (inside / "file").write_text("the tree's\n")
        host.mkdir(parents=True)
        (host / "file").write_text("the host's\n")
        os.chmod(host / "file", 0o600)
        tree = procs.start(["chroot", str(jail), "/bin/busybox", "sleep", "1000"])
        time.sleep(0.2)  # chroot execs busybox: wait until it has
        for _ in range(100):
            if os.readlink("/proc/%d/root" % tree.pid) == str(jail):
                break
            time.sleep(0.05)
        r = criu.dump(tree.pid, "--tmp-file", "/tmp/%s/app" % name)
        assert r.returncode == 0, r
        dump_log = r.log
        tree.wait(timeout=10)
        wait_gone(tree.pid)
        shutil.rmtree(inside)
        r = criu.restore()
        assert r.returncode == 0, r
        procs.track(tree.pid)
        assert (inside / "file").read_text() == "the tree's\n"
        assert (host / "file").read_text() == "the host's\n"
        assert os.stat(host / "file").st_mode & 0o777 == 0o600
        assert os.readlink("/proc/%d/root" % tree.pid) == str(jail)
        assert "The dumped tree is chrooted to %s" % jail in dump_log
        kill_tree(tree.pid)
        wait_gone(tree.pid)
    finally:
        shutil.rmtree(jail, ignore_errors=True)
        shutil.rmtree(host.parent, ignore_errors=True)


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
