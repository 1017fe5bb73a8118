#!/usr/bin/python3
"""--tmp-file against upstream's action script, scripts/tmp-files.sh (issue 25).

CRIU's answer to its issue #65 is an action script: dump with
--action-script tmp-files.sh and the paths, restore with --action-script
tmp-files.sh. This runs, in one run and on the same workloads:

  upstream    the script as shipped in the pinned release
  fixed       the same script with only its quoting fixed: a copy of the
              upstream file made at run time, with the project's patch for
              upstream applied to it (patches/standalone/0001-scripts-tmp-
              files.sh-pass-tar-options-as-words.patch: the tar options in
              bash arrays, passed as "${ARGS[@]}", one word each); nothing
              else changes
  tmp-file    criu dump --tmp-file PATH
  precopy     criu dump --tmp-file PATH --tmp-file-precopy
  none        criu without either (the baseline)

--action-script takes one path and runs it with no arguments (criu
exec's the whole value as a file name): the script's usage line,
'$CRIU_SCRIPTS_PATH/tmp-files.sh /tmp/x', is run once as written to show
that. The practical way to give the script its paths is a wrapper that
exec's it with them (made here per run, at dump); at restore the script
takes no arguments. criu tells a script the phase in CRTOOLS_SCRIPT_ACTION.

Workloads:
  #65 log     a shell appends "tick N" to /tmp/x/log (open on its stdout);
              /tmp/x is wiped between dump and restore
  mntns       the same shell in a container-like tree: its own mount
              namespace, root a bind of /, a private tmpfs on /tmp
              (test/e2e/test_mntns.py); restored with --root. The host
              has its own /tmp/x/log, changed after the dump
  chroot      the same shell, busybox in a chroot directory; the host has
              its own /tmp/x/log, changed after the dump
  attacker    the #65 log case at /tmp/top/x; after the wipe a local
              unprivileged user plants /tmp/top -> a root-only directory
              in the sticky /tmp, before restore
  128 MiB     a tree whose saved directory holds 128 MiB of random data:
              frozen time (criu's frozen_time, stats-dump image), median
              of RUNS dumps; added = minus the plain dump's
  runc        a busybox container under runc (if installed), /data a bind
              mount of a host directory wiped after the checkpoint; criu
              options come from the container's org.criu.config file:
              "action-script WRAPPER" (the wrapper passes /data, or the host
              directory behind it, at post-dump and nothing at
              pre-restore), or "tmp-file /data"

Run as root: action_script.py CRIU [RUNS]. It re-executes itself in a
private mount namespace with a tmpfs on /tmp (mode 1777, as a sticky /tmp)
and one for its own files; every criu run is bounded with timeout(1), and
a hang fails the run naming the step. Prints a Markdown table.
"""
import ctypes
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

LIMIT = 60  # seconds, each run of criu
STAGE = "/var/tmp/criu-bench-action-script"
USER = "criu-bench-attacker"
SIZE_MIB = 128
LOOP = ('exec >>/tmp/x/log 2>&1 </tmp/x/log; n=0; '
        'while :; do n=$((n+1)); echo tick $n; /bin/busybox sleep 0.05; done')

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ["upstream", "fixed", "tmp-file", "precopy"]
FIX = os.path.join(os.path.dirname(HERE), "patches/standalone/0001-scripts-tmp-files.sh-pass-tar-options-as-words.patch")


def die(msg):
    sys.exit("action_script.py: FAILED: " + msg)


# ------------------------------------------------------------ processes

def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_gone(pid, timeout=20):
    deadline = time.time() + timeout
    while os.path.exists("/proc/%d" % pid):
        reap()
        if time.time() > deadline:
            die("pid %d is still there after %ds" % (pid, timeout))
        time.sleep(0.01)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except (FileNotFoundError, IndexError):
        return False


def children(pid):
    out = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                out += [int(k) for k in f.read().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


def kill_tree(pid):
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        try:
            os.kill(p, 19)  # SIGSTOP: no new children while we walk
        except ProcessLookupError:
            continue
        todo += children(p)
    for p in tree:
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass
    for p in tree:
        wait_gone(p)


def start(argv, **kw):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd="/", **kw).pid


def bounded(argv, step, limit=LIMIT):
    """argv under timeout(1); a hang fails the whole run naming the step."""
    t = time.monotonic()
    r = subprocess.run(["timeout", "-k", "5", str(limit)] + argv, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    took = time.monotonic() - t
    if r.returncode in (124, 137):
        die("%s did not finish within %ds (killed)" % (step, limit))
    return r.returncode, took, r.stdout + r.stderr


def sh(cmd):
    subprocess.run(["sh", "-c", cmd], check=True)


# ------------------------------------------------------------ criu

class Run:
    """One criu dump (and restore) of one workload with one method."""

    seq = 0

    def __init__(self, criu, method, paths):
        Run.seq += 1
        self.criu, self.method, self.paths = criu, method, paths
        self.images = "%s/img/%d" % (STAGE, Run.seq)
        os.makedirs(self.images)

    def dump_opts(self):
        if self.method == "none":
            return []
        if self.method in ("upstream", "fixed"):
            return ["--action-script", wrapper(self.method, self.paths)]
        if self.method == "documented":
            return ["--action-script", "%s %s" % (SCRIPTS["upstream"], " ".join(self.paths))]
        opts = []
        for p in self.paths:
            opts += ["--tmp-file", p]
        return opts + (["--tmp-file-precopy"] if self.method == "precopy" else [])

    def restore_opts(self):
        return ["--action-script", SCRIPTS[self.method]] if self.method in SCRIPTS else []

    def dump(self, pid, step):
        rc, took, out = bounded([self.criu, "dump", "--no-default-config", "-t", str(pid), "-D", self.images,
                                 "-o", "dump.log", "-v4"] + self.dump_opts(),
                                "criu dump (%s, %s)" % (step, self.method))
        self.dump_rc, self.dump_took = rc, took
        self.dump_log = read(self.images + "/dump.log") + out
        self.frozen_ms = frozen_ms(self.images) if rc == 0 else None
        return rc == 0

    def restore(self, step, wrap=(), extra=()):
        rc, took, out = bounded(list(wrap) + [self.criu, "restore", "--no-default-config", "-d", "-D",
                                              self.images, "-o", "restore.log", "-v4"] + list(extra) +
                                self.restore_opts(), "criu restore (%s, %s)" % (step, self.method))
        self.restore_rc = rc
        self.restore_log = read(self.images + "/restore.log") + out
        return rc == 0

    def saved(self):
        """Members of what was archived: {name: bytes or None}."""
        for name in ("tmpfiles.tar.gz", "tmp-files.tar.img"):
            p = os.path.join(self.images, name)
            if os.path.exists(p):
                with tarfile.open(p, "r:*") as t:
                    return {m.name: (t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()}
        return None

    def failure(self, log):
        """What a user of the criu command line sees: criu's first error lines."""
        lines = [ln for ln in log.splitlines() if ("Error" in ln or "tar:" in ln or "tmp-files.sh:" in ln)
                 and "RLIMIT_NOFILE" not in ln]
        if not lines:
            return "(no error in the log; criu exited %d)" % (self.dump_rc if log is self.dump_log else self.restore_rc)
        ln = re.sub(r"^\(\s*[\d.]+\)\s*(\d+: )?", "", lines[0])
        ln = re.sub(r"/proc/\d+/fd/\d+", "/proc/PID/fd/N", ln).replace(STAGE, "…").replace(STAGE[1:], "…")
        return shorten(ln, 150)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def shorten(s, n):
    s = s.replace("|", "\\|")
    return s if len(s) <= n else s[:n - 1] + "…"


def frozen_ms(images):
    import pycriu
    with open(os.path.join(images, "stats-dump"), "rb") as f:
        img = pycriu.images.load(f)
    return int(img["entries"][0]["dump"]["frozen_time"]) / 1000


SCRIPTS = {}
WRAPPERS = {}


def make_scripts(tree):
    """upstream: the release's file; fixed: the same with its quoting fixed."""
    src = os.path.join(tree, "scripts/tmp-files.sh")
    up = STAGE + "/upstream-tmp-files.sh"
    shutil.copy2(src, up)
    os.chmod(up, 0o755)
    # The one edit: the project's patch for upstream, applied to a copy.
    os.makedirs(STAGE + "/fixed/scripts")
    fixed = STAGE + "/fixed/scripts/tmp-files.sh"
    shutil.copy2(src, fixed)
    r = subprocess.run(["patch", "-s", "-p1", "-d", STAGE + "/fixed", "-i", FIX], capture_output=True, text=True)
    if r.returncode:
        die("%s does not apply to %s: %s%s" % (FIX, src, r.stdout, r.stderr))
    os.chmod(fixed, 0o755)
    SCRIPTS.update(upstream=up, fixed=fixed)
    SCRIPTS["documented"] = up


def wrapper(method, paths):
    """--action-script runs one path with no arguments: a wrapper gives the
    script its paths (at dump; at restore the script takes none)."""
    key = (method, tuple(paths))
    if key not in WRAPPERS:
        path = "%s/wrap-%d.sh" % (STAGE, len(WRAPPERS))
        with open(path, "w") as f:
            f.write("#!/bin/sh\n# criu runs an action script with no arguments\nexec %s %s\n" % (
                SCRIPTS[method], " ".join("'%s'" % p for p in paths)))
        os.chmod(path, 0o755)
        WRAPPERS[key] = path
    return WRAPPERS[key]


# ------------------------------------------------------------ workloads

def log_continues(read_log, prefix):
    """After restore: the restored shell goes on at its offset. The log
    must start with prefix (what it held at the dump) and be "tick 1",
    "tick 2", ... with nothing lost, doubled or zeroed, two lines past the
    prefix's last (a restarted shell would write "tick 1" again)."""
    n = len(prefix.splitlines())
    deadline = time.time() + 5
    while time.time() < deadline:
        now = read_log()
        if len(now.splitlines()) >= n + 2 and now.endswith("\n"):
            break
        time.sleep(0.02)
    lines = now.splitlines()
    if now.startswith(prefix) and lines == ["tick %d" % i for i in range(1, len(lines) + 1)] and len(lines) > n:
        return "exact"
    if now.startswith("host"):
        return "wrong: the host's file"
    return "wrong content"


def row(workload, method, **cols):
    r = {"workload": workload, "method": method, "works": "no", "saved": "—", "added": "—",
         "restore": "—", "attacker": "—", "seen": "—"}
    r.update(cols)
    return r


def loop_shell(criu, method, step, start_tree, wipe, read_log, host_file=None, wrap=(), extra=()):
    """Common to the log workloads: start, dump, wipe, restore, check."""
    pid = start_tree()
    time.sleep(0.3)
    r = Run(criu, method, ["/tmp/x"])
    if not r.dump(pid, step):
        if alive(pid):
            kill_tree(pid)
        return r, row(step, method, seen=r.failure(r.dump_log), restore="— (dump failed, tree resumed)")
    wait_gone(pid)
    saved_log = read_log()
    saved = r.saved()
    what = "nothing (no archive)"
    if saved is not None:
        logs = [v for k, v in saved.items() if k.rstrip("/").endswith("x/log") and v is not None]
        what = ("the host's /tmp/x" if logs and logs[0].startswith(b"host") else
                "the tree's /tmp/x" if logs and logs[0].decode() == saved_log else "?")
    elif method == "none":
        what = "nothing"
    if host_file:
        with open(host_file, "w") as f:
            f.write("host's, changed after the dump\n")
    wipe()
    ok = r.restore(step, wrap, extra)
    cols = dict(saved=what)
    if ok:
        cols["restore"] = log_continues(read_log, saved_log)
        cols["works"] = "yes" if cols["restore"].startswith("exact") and "tree's" in what else "no"
        kill_tree(pid)
    else:
        cols["restore"] = "fails"
        cols["seen"] = r.failure(r.restore_log)
    if host_file:
        cols["restore"] += "; " + host_note(host_file)
    return r, row(step, method, **cols)


def host_note(host_file):
    """The host's own file at the saved path was changed after the dump."""
    if read(host_file).startswith("host's, changed"):
        return "host's /tmp/x/log untouched"
    return "root put the host's old /tmp/x/log back over its new one"


def fresh_tmp_x():
    shutil.rmtree("/tmp/x", ignore_errors=True)
    os.makedirs("/tmp/x")


def workload_log(criu, method):
    fresh_tmp_x()
    r, out = loop_shell(criu, method, "#65 log", lambda: start(["/bin/busybox", "sh", "-c", LOOP]),
                        lambda: shutil.rmtree("/tmp/x"), lambda: read("/tmp/x/log"))
    return out


def workload_mntns(criu, method):
    fresh_tmp_x()
    with open("/tmp/x/log", "w") as f:
        f.write("host's\n")
    n = Run.seq + 1
    root, root2 = "%s/ctr%d/root" % (STAGE, n), "%s/ctr%d/root2" % (STAGE, n)
    os.makedirs(root)
    os.makedirs(root2)
    script = "; ".join([
        "set -e", "mount --bind / %s" % root, "mount -t proc proc %s/proc" % root,
        "mount -t tmpfs tmpfs %s/tmp" % root, "mkdir %s/tmp/x" % root, "cd %s" % root,
        "pivot_root . mnt", "umount -l /mnt", "exec /bin/busybox sh -c '%s'" % LOOP])
    pid_box = []

    def start_tree():
        pid_box.append(start(["unshare", "--mount", "--propagation", "private", "sh", "-c", script]))
        return pid_box[0]

    def read_log():
        return read("/proc/%d/root/tmp/x/log" % pid_box[0])

    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind / %s && exec "$0" "$@"' % root2]
    # The log is on the tree's own tmpfs, gone with it: what it held a
    # moment before the dump is read through the tree's root.
    pid = start_tree()
    time.sleep(0.3)
    r = Run(criu, method, ["/tmp/x"])
    dumped_log = read_log()
    if not r.dump(pid, "mntns"):
        kill_tree(pid)
        return row("mntns + tmpfs /tmp", method, seen=r.failure(r.dump_log),
                   restore="— (dump failed, tree resumed)")
    wait_gone(pid)
    saved = r.saved()
    what = "nothing (criu's own tmpfs image has the tree's /tmp)"
    if saved is not None:
        logs = [v for k, v in saved.items() if k.rstrip("/").endswith("x/log") and v is not None]
        what = ("the host's /tmp/x" if logs and logs[0].startswith(b"host") else
                "the tree's /tmp/x" if logs and logs[0].startswith(b"tick") else "?")
    with open("/tmp/x/log", "w") as f:
        f.write("host's, changed after the dump\n")
    ok = r.restore("mntns", wrap, ["--root", root2])
    cols = dict(saved=what)
    if ok:
        got = log_continues(read_log, dumped_log)
        cols["restore"] = got + (" (criu's own tmpfs image)" if method in SCRIPTS else "")
        cols["works"] = "yes" if got.startswith("exact") and "host" not in what else "no"
        kill_tree(pid)
    else:
        cols["restore"] = "fails"
        cols["seen"] = r.failure(r.restore_log)
    cols["restore"] += "; " + host_note("/tmp/x/log")
    return row("mntns + tmpfs /tmp", method, **cols)


def workload_chroot(criu, method):
    fresh_tmp_x()
    with open("/tmp/x/log", "w") as f:
        f.write("host's\n")
    jail = "%s/jail%d" % (STAGE, Run.seq + 1)
    os.makedirs(jail + "/bin")
    os.makedirs(jail + "/tmp/x")
    shutil.copy2("/bin/busybox", jail + "/bin/busybox")
    r, out = loop_shell(criu, method, "chroot",
                        lambda: start(["chroot", jail, "/bin/busybox", "sh", "-c", LOOP]),
                        lambda: shutil.rmtree(jail + "/tmp/x"), lambda: read(jail + "/tmp/x/log"),
                        host_file="/tmp/x/log")
    return out


def workload_attacker(criu, method, attacker, victim):
    top = "/tmp/top"
    shutil.rmtree(top, ignore_errors=True)
    if os.path.islink(top):
        os.unlink(top)
    os.makedirs(top + "/x")
    os.chmod(top, 0o755)
    loop = LOOP.replace("/tmp/x", top + "/x")
    pid = start(["/bin/busybox", "sh", "-c", loop])
    time.sleep(0.3)
    r = Run(criu, method, [top + "/x"])
    before = listing(victim)
    if not r.dump(pid, "attacker"):
        kill_tree(pid)
        return row("local user vs restore", method, seen=r.failure(r.dump_log),
                   restore="— (dump failed, tree resumed)", attacker="nothing (no restore)")
    wait_gone(pid)
    shutil.rmtree(top)
    # The user is first at the name in the sticky /tmp, as after a reboot.
    subprocess.run(["setpriv", "--reuid=%d" % attacker.pw_uid, "--regid=%d" % attacker.pw_gid,
                    "--clear-groups", "--no-new-privs", "ln", "-s", victim, top], check=True)
    ok = r.restore("attacker")
    after = listing(victim)
    cols = dict(saved="the tree's %s/x" % top if r.saved() else "nothing")
    if ok:
        kill_tree(pid)
        cols["restore"] = "\"succeeds\": into the root-only directory" if after != before else "?"
    else:
        refused = "Refusing" in r.restore_log or "Nothing of the --tmp-file archive was restored" in r.restore_log
        cols["restore"] = "refused" if refused else "fails"
        cols["seen"] = r.failure(r.restore_log)
    new = sorted(set(after) - set(before))
    cols["attacker"] = ("root wrote %s in a root-only directory (%s)" % (
        ", ".join(n for n in new), "the restored tree writes there" if ok else "restore failed after") if new
        else "nothing: the root-only directory is unchanged")
    cols["works"] = "no" if new or not ok else "yes"
    if not ok and not new:
        cols["works"] = "refuses (safe)"
    os.unlink(top) if os.path.islink(top) else shutil.rmtree(top, ignore_errors=True)
    return row("local user vs restore", method, **cols)


def listing(d):
    out = {}
    for dirpath, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, d)] = os.lstat(p).st_ino
    return out


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def workload_big(criu, method, runs, data):
    """Frozen time with 128 MiB to save; restore checked after a wipe."""
    frozen, last = [], None
    want = sha(data)
    for i in range(runs):
        pid = start(["sleep", "1000"])
        r = Run(criu, method, [os.path.dirname(data)])
        ok = r.dump(pid, "128 MiB")
        if not ok:
            kill_tree(pid)
            return row("128 MiB", method, seen=r.failure(r.dump_log), restore="— (dump failed, tree resumed)")
        wait_gone(pid)
        frozen.append(r.frozen_ms)
        if method == "none" or i < runs - 1:
            shutil.rmtree(r.images)
            continue
        keep = os.path.dirname(data) + ".keep"
        shutil.move(os.path.dirname(data), keep)
        ok = r.restore("128 MiB")
        cols = dict(saved="the tree's (%d MiB image)" % (
            sum(os.path.getsize(os.path.join(r.images, n)) for n in os.listdir(r.images)
                if n.startswith("tmp")) >> 20))
        if ok:
            kill_tree(pid)
            good = os.path.exists(data) and sha(data) == want
            cols["restore"] = "exact (sha256)" if good else "wrong content"
            cols["works"] = "yes" if good else "no"
        else:
            cols["restore"] = "fails"
            cols["seen"] = r.failure(r.restore_log)
        shutil.rmtree(os.path.dirname(data), ignore_errors=True)
        shutil.move(keep, os.path.dirname(data))
        last = cols
        shutil.rmtree(r.images)
    med = statistics.median(frozen)
    if method == "none":
        return row("128 MiB", method, frozen=med, works="—", saved="nothing", restore="—")
    return row("128 MiB", method, frozen=med, **last)


RUNC = shutil.which("runc") or "/usr/sbin/runc"
RUNC_TICKER = ("exec </dev/null >/dev/null 2>&1; exec 3>>/data/log; n=0; "
               "while true; do n=$((n+1)); echo tick $n >&3; sleep 0.05; done")


def workload_runc(criu, method, paths):
    """A busybox container under runc (as test/e2e/test_runc.py runs it):
    /data is a bind mount of a host directory, wiped after the
    checkpoint. runc passes criu options only through a configuration
    file: here the container's own, named by the annotation
    org.criu.config (runc reads it at checkpoint and at restore), so the
    action script is a wrapper that passes the paths at post-dump and
    none at pre-restore."""
    n = Run.seq + 1
    Run.seq += 1
    base = "%s/runc%d" % (STAGE, n)
    rootfs, data = base + "/bundle/rootfs", base + "/data"
    label = "runc, bind /data" + (": the host path given" if paths == ["HOST_DATA"] else "")
    paths = [data if p == "HOST_DATA" else p for p in paths]
    for d in ("bin", "proc", "sys", "dev", "tmp", "data", "etc"):
        os.makedirs(rootfs + "/" + d)
    os.makedirs(data)
    shutil.copy2("/bin/busybox", rootfs + "/bin/busybox")
    bounded(["chroot", rootfs, "/bin/busybox", "--install", "-s", "/bin"], "busybox --install", 30)
    r = subprocess.run([RUNC, "spec"], cwd=base + "/bundle", capture_output=True, text=True, timeout=30)
    if r.returncode:
        die("runc spec: %s" % r.stderr)
    conf = base + "/criu.conf"
    if method in ("fixed", "upstream"):
        wrap = base + "/wrap.sh"
        with open(wrap, "w") as f:
            f.write('#!/bin/sh\n# runc passes no arguments either: the paths are written here\n'
                    'case "$CRTOOLS_SCRIPT_ACTION" in\npre-restore) exec %s ;;\n*) exec %s %s ;;\nesac\n'
                    % (SCRIPTS[method], SCRIPTS[method], " ".join(paths)))
        os.chmod(wrap, 0o755)
        text = "action-script %s\n" % wrap
    else:
        text = "".join("tmp-file %s\n" % p for p in paths)
    with open(conf, "w") as f:
        f.write(text)
    spec_path = base + "/bundle/config.json"
    with open(spec_path) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sh", "-c", RUNC_TICKER]
    spec["root"]["readonly"] = False
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]})
    spec.setdefault("annotations", {})["org.criu.config"] = conf
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    cid = "bench-as-%d-%d" % (os.getpid(), n)
    rc_ = [RUNC, "--root", base + "/state", "--criu", criu]

    def runc(*args, step):
        return bounded(rc_ + list(args), "runc %s (%s, %s)" % (step, label, method))

    def state():
        rc, _, out = runc("state", cid, step="state")
        return json.loads(out) if rc == 0 else None
    rc, _, out = runc("run", "-d", "--bundle", base + "/bundle", cid, step="run")
    if rc:
        die("runc run: %s" % out)
    pid = state()["pid"]
    time.sleep(0.4)
    img, work = base + "/img", base + "/work"
    rc, _, out = runc("checkpoint", "--image-path", img, "--work-path", work, cid, step="checkpoint")
    cols = {}
    if rc:
        st = state()
        running = st and st["status"] == "running" and alive(pid)
        runc("delete", "-f", cid, step="delete")
        wait_gone(pid)
        log = Run.failure(SimpleRun(rc), read(work + "/dump.log"))
        return row(label, method, restore="— (checkpoint failed, container %s)" % (
                   "resumed" if running else "NOT running"),
                   seen="runc: %s; log: %s" % (runc_said(out), log))
    wait_gone(pid)
    saved_log = read(data + "/log")
    saved = None
    for name in ("tmpfiles.tar.gz", "tmp-files.tar.img"):
        if os.path.exists(os.path.join(img, name)):
            with tarfile.open(os.path.join(img, name), "r:*") as t:
                saved = [m.name for m in t.getmembers()]
    cols["saved"] = ("the container's /data (by its host path)" if saved and any(
        m.lstrip("/").startswith(data.lstrip("/")) for m in saved) else
        "the container's /data" if saved else "nothing")
    for e in os.listdir(data):
        os.unlink(os.path.join(data, e))
    rc, _, out = runc("restore", "-d", "--image-path", img, "--work-path", work, "--bundle", base + "/bundle",
                      cid, step="restore")
    if rc == 0:
        cols["restore"] = log_continues(lambda: read(data + "/log"), saved_log)
        cols["works"] = "yes" if cols["restore"] == "exact" else "no"
    else:
        cols["restore"] = "fails"
        cols["seen"] = "runc: %s; log: %s" % (runc_said(out), Run.failure(SimpleRun(rc), read(work + "/restore.log")))
    runc("delete", "-f", cid, step="delete")
    try:
        kill_tree(pid)
    except SystemExit:
        pass
    return row(label, method, **cols)


def runc_said(out):
    """runc's own error: its last msg="..."."""
    msgs = re.findall(r'msg="((?:[^"\\]|\\.)*)"', out)
    said = msgs[-1] if msgs else out.strip().splitlines()[-1] if out.strip() else ""
    return shorten(said.split("\\n")[0], 60)


class SimpleRun:
    def __init__(self, rc):
        self.dump_rc = self.restore_rc = rc
        self.dump_log = None


# ------------------------------------------------------------ main

def attacker_user():
    made = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True)
        made = True
    return pwd.getpwnam(USER), made


def table(rows):
    base = {}
    for r in rows:
        if r["method"] == "none" and r.get("frozen") is not None:
            base[r["workload"]] = r["frozen"]
    out = io.StringIO()
    names = {"none": "plain criu (neither)", "upstream": "tmp-files.sh as shipped",
             "fixed": "tmp-files.sh, quoting fixed", "tmp-file": "`--tmp-file`",
             "precopy": "`--tmp-file --tmp-file-precopy`",
             "documented": "tmp-files.sh as its usage line says"}
    out.write("| workload | method | works | what was saved | frozen time added | restore | "
              "what an attacker achieved | what the user sees on failure |\n")
    out.write("|---|---|---|---|---:|---|---|---|\n")
    for r in rows:
        added = "—"
        if r.get("frozen") is not None and r["workload"] in base:
            if r["method"] == "none":
                added = "0 (frozen %.0f ms)" % r["frozen"]
            else:
                added = "%+.0f ms" % (r["frozen"] - base[r["workload"]])
        out.write("| %s |\n" % " | ".join([r["workload"], names[r["method"]], r["works"], r["saved"], added,
                                           r["restore"], r["attacker"], "`%s`" % r["seen"]
                                           if r["seen"] != "—" else "—"]))
    return out.getvalue()


def main_workloads(criu, runs, attacker, victim):
    rows = [workload_log(criu, "none"), workload_log(criu, "documented")]
    for m in METHODS:
        rows.append(workload_log(criu, m))
    for m in METHODS:
        rows.append(workload_mntns(criu, m))
    for m in METHODS:
        rows.append(workload_chroot(criu, m))
    for m in METHODS:
        rows.append(workload_attacker(criu, m, attacker, victim))
    os.makedirs("/tmp/big")
    data = "/tmp/big/data"
    with open(data, "wb") as f:
        for _ in range(SIZE_MIB):
            f.write(os.urandom(1 << 20))
    for m in ["none"] + METHODS:
        rows.append(workload_big(criu, m, runs, data))
    return rows


def main():
    if os.geteuid() != 0:
        die("run as root")
    criu = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tree = os.path.dirname(os.path.dirname(criu))
    if os.environ.get("BENCH_AS_IN_NS") != "1":
        os.environ["BENCH_AS_IN_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable] + sys.argv)
    sys.path.insert(0, os.path.join(tree, "lib"))
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # child subreaper: restored trees are ours
    t0 = time.monotonic()
    sh("mount -t tmpfs -o size=1g,mode=1777 bench-tmp /tmp")
    os.makedirs(STAGE, exist_ok=True)
    sh("mount -t tmpfs -o size=2g,mode=0700 bench-stage %s" % STAGE)
    make_scripts(tree)
    victim = STAGE + "/victim"
    os.makedirs(victim, mode=0o700)
    with open(victim + "/secret", "w") as f:
        f.write("root only\n")
    attacker, made = attacker_user()
    rows = []
    only = os.environ.get("BENCH_AS_ONLY")  # "runc": that workload alone, while working on it
    try:
        if only != "runc":
            rows += main_workloads(criu, runs, attacker, victim)
        if os.path.exists(RUNC):
            rows.append(workload_runc(criu, "upstream", ["/data"]))
            rows.append(workload_runc(criu, "fixed", ["/data"]))
            rows.append(workload_runc(criu, "fixed", ["HOST_DATA"]))
            rows.append(workload_runc(criu, "tmp-file", ["/data"]))
    finally:
        if made:
            subprocess.run(["userdel", USER])
    with open("/proc/sys/fs/protected_symlinks") as f:
        prot = f.read().strip()
    print("bench/action_script.py %s %d: %d MiB random for frozen time, median of %d dumps; "
          "fs.protected_symlinks=%s; %.0f s\n" % (sys.argv[1], runs, SIZE_MIB, runs, prot, time.monotonic() - t0))
    print(table(rows))


if __name__ == "__main__":
    main()
