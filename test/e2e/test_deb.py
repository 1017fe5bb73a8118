"""The Debian package of "make deb" (scripts/build-deb.sh), installed.

The package is built afresh (incrementally, in build/deb) into a
directory of the test, then installed with dpkg in a throwaway root: a
private mount namespace in which an overlayfs has the machine's own root
as its lower layer and a tmpfs as its upper layer, with /proc, /sys (and
its cgroup mounts) and /dev bound in, and the e2e base directory
/var/tmp/criu-tmpfile-e2e bound at its own path, so that the test and the
commands inside share the container bundles, images and data. Everything
dpkg, criu and runc write elsewhere inside (/usr, /var/lib/dpkg,
/etc/criu/runc.conf, /run, /tmp) lands on that tmpfs and is gone with the
namespace: the machine is left as it was. The root's helper process is
killed by pid at teardown, and the test checks that no process is left
in its mount namespace, so that the namespace and its mounts are gone.

Inside that root: criu is on the default PATH only once the package is
installed, "criu check" passes, /usr/bin/python3 imports pycriu (with the
--tmp-file fields in its rpc module) from dist-packages and drives the
installed criu over RPC, crit works, "man criu" documents --tmp-file, and
runc, without --criu, checkpoints and restores a busybox container whose
bind-mounted /data is wiped in between (tmp-file /data in runc.conf; the
helpers of containers.py). Another root gets Debian's own criu first (the
package apt downloads, cached in build/cache/debian-criu): apt installs
this package over it as an upgrade, and it purges cleanly. Every dpkg, criu and
runc run has a time limit (run_bounded).
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BASE, ROOT, UPSTREAM, kill_tree, log_tail, run_bounded
from containers import RUNC, Runc, assert_carries_on, checkpoint_ok, have_runc, restore_ok, wipe

# Debian's PATH for root (/etc/profile, login.defs): what runc inherits
# from a root shell; /usr/sbin, where criu goes, is on it.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
BUILD_TIMEOUT = 1800  # a first build compiles all of CRIU: about 3 minutes here
DPKG_TIMEOUT = 300
DEBIAN_CACHE = ROOT / "build/cache/debian-criu"
SPLIT = ["libcriu2", "libcriu-dev", "python3-pycriu", "libcompel1", "libcompel-dev"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def control(deb, field):
    r = subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True, check=True)
    return r.stdout.strip()


def names(relation):
    """The package names of a Depends-like field."""
    return {re.split(r"[\s(:]", alt.strip())[0] for part in relation.split(",") if part.strip()
            for alt in part.split("|")}


def version_gt(a, b):
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


@pytest.fixture(scope="module")
def deb():
    """The package, built by scripts/build-deb.sh into a directory of the
    test (dist/ is left alone)."""
    out = Path(tempfile.mkdtemp(prefix="deb.", dir=BASE))
    try:
        r = run_bounded([str(ROOT / "scripts/build-deb.sh"), str(out)], "scripts/build-deb.sh",
                        "building the package", timeout=BUILD_TIMEOUT, cwd=str(ROOT))
        assert r.returncode == 0, "build-deb.sh failed:\n%s%s" % (r.stdout, r.stderr[-3000:])
        debs = list(out.glob("criu_*.deb"))
        assert len(debs) == 1, debs
        yield debs[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)


class ThrowawayRoot:
    """A root to install packages into that vanishes when closed (see the
    module's docstring). run() runs a command in it, with Debian's default
    PATH and nothing else of the test's environment."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="throwaway.", dir=BASE))
        self.merged = self.dir / "root"
        self.layers = self.dir / "layers"
        self.merged.mkdir()
        self.layers.mkdir()
        self.helper = None
        self.ns = None
        # The overlay becomes the namespace's root mount (pivot_root, not
        # chroot): criu refuses to dump a container whose root is not the
        # root of its mount namespace, and runc's pivot_root in a chroot
        # leaves the container's root below the host's root mount.
        script = """
            set -e
            mount -t tmpfs -o mode=0700,size=4g throwaway "$2"
            mkdir "$2/upper" "$2/work"
            mount -t overlay throwaway -o "lowerdir=/,upperdir=$2/upper,workdir=$2/work" "$1"
            for d in proc sys dev; do mount --rbind /$d "$1/$d"; done
            mount --bind "$3" "$1$3"
            cd "$1"
            mkdir .old-root
            pivot_root . .old-root
            cd /
            umount -l /.old-root
            rmdir /.old-root
            echo ready
            exec sleep infinity
        """
        out = self.dir / "helper.out"
        with open(out, "wb") as f:
            # unshare without --fork: the helper's pid is the pid of the
            # process that holds the namespace.
            self.helper = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                 str(self.merged), str(self.layers), str(BASE)],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
        deadline = time.monotonic() + 30
        while out.read_text(errors="replace") != "ready\n":
            if self.helper.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError("the throwaway root did not come up: " + out.read_text(errors="replace"))
            time.sleep(0.02)
        self.ns = os.readlink("/proc/%d/ns/mnt" % self.helper.pid)
        assert self.ns != os.readlink("/proc/self/ns/mnt")

    def argv(self, cmd):
        return (["nsenter", "-t", str(self.helper.pid), "-m", "-r", "-w", "--",
                 "env", "-i", "PATH=" + DEFAULT_PATH, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
                 "DEBIAN_FRONTEND=noninteractive"] + [str(c) for c in cmd])

    def run(self, cmd, step, timeout=None, log=None, check=True):
        r = run_bounded(self.argv(cmd), str(cmd[0]), step + " (in the throwaway root)",
                        log=log, timeout=timeout, cwd="/")
        if check:
            assert r.returncode == 0, "%s failed (%d):\n%s%s" % (" ".join(map(str, cmd)), r.returncode,
                                                                r.stdout, r.stderr)
        return r

    def sh(self, script, step, **kw):
        return self.run(["sh", "-c", script], step, **kw)

    def path(self, p):
        """A path of the root, as the test reaches it from outside."""
        return Path("/proc/%d/root%s" % (self.helper.pid, p))

    def dpkg_install(self, deb):
        return self.run(["dpkg", "-i", deb], "dpkg -i %s" % Path(deb).name, timeout=DPKG_TIMEOUT)

    def close(self):
        if self.helper is not None:
            kill_tree(self.helper.pid)
            self.helper.wait(timeout=10)
        if self.ns:
            # Nothing may be left in the namespace: with the last process
            # the namespace, its tmpfs and the overlay are gone.
            left = []
            for p in Path("/proc").glob("[0-9]*/ns/mnt"):
                try:
                    if os.readlink(p) == self.ns:
                        left.append(p.parts[2])
                except OSError:
                    pass
            assert not left, "processes left in the throwaway root's namespace: %s" % left
        shutil.rmtree(self.dir, ignore_errors=True)


def host_state():
    """What the test must not change on the machine."""
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "criu"],
                       capture_output=True, text=True)
    return (q.stdout, [p for p in ("/usr/sbin/criu", "/usr/bin/crit", DIST_PACKAGES + "/pycriu",
                                   "/usr/share/man/man8/criu.8.gz") if os.path.lexists(p)],
            Path("/etc/criu/runc.conf").read_bytes() if os.path.exists("/etc/criu/runc.conf") else None)


@pytest.fixture(scope="module")
def installed(deb):
    """A throwaway root with the package installed by dpkg -i."""
    before = host_state()
    root = ThrowawayRoot()
    try:
        r = root.sh("command -v criu crit || true", "criu on PATH before the install")
        assert r.stdout == "", "criu or crit is on PATH before the package is installed: " + r.stdout
        root.dpkg_install(deb)
        yield root
    finally:
        root.close()
    assert host_state() == before, "the machine changed"


def test_package_fields(deb):
    """Named criu, as Debian's, versioned above bookworm's and sid's criu:
    an upgrade of it for dpkg and apt; the packages later Debian releases
    split criu into are replaced."""
    assert control(deb, "Package") == "criu"
    version = control(deb, "Version")
    assert version.startswith(UPSTREAM.VERSION + "-"), version
    for debian in ("3.17.1-2+deb12u2", "4.2.1-1"):
        assert version_gt(version, debian), "%s does not sort above Debian's %s" % (version, debian)
    assert control(deb, "Architecture") == subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    for field in ("Conflicts", "Replaces", "Provides"):
        assert names(control(deb, field)) == set(SPLIT), field
    assert {"python3", "python3-protobuf"} <= names(control(deb, "Depends"))


def owner(path):
    """The package that ships path: dpkg -S on the path, the file it links
    to, each also with /usr added or removed (dpkg records the names of
    Debian 12's merged /usr as the packages ship them)."""
    tried = []
    for p in (path, os.path.realpath(path)):
        for q in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
            r = subprocess.run(["dpkg", "-S", q], capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout.split(":")[0]
            tried.append(q)
    raise AssertionError("no package ships %s" % tried)


def test_package_depends_on_what_its_binaries_load(deb, workdir):
    """Every shared library an ELF file of the package needs (NEEDED) is
    either in the package or comes from a package named in Depends, and
    every library package in Depends is needed by one of them (dpkg -S on
    the file ldconfig resolves)."""
    x = workdir / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(x)], check=True)
    shipped = {p.name for p in x.rglob("*.so*")}
    cache = {}
    for line in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.match(r"\s+(\S+) \(libc6,x86-64.*\) => (\S+)", line)
        if m:
            cache.setdefault(m.group(1), m.group(2))
    needed_pkgs, elves = set(), 0
    for f in x.rglob("*"):
        if not f.is_file() or f.is_symlink() or f.read_bytes()[:4] != b"\x7fELF":
            continue
        elves += 1
        dyn = subprocess.run(["objdump", "-p", str(f)], capture_output=True, text=True, check=True).stdout
        for lib in re.findall(r"NEEDED\s+(\S+)", dyn):
            if lib in shipped:
                continue
            assert lib in cache, "%s needs %s, which ldconfig does not know" % (f, lib)
            needed_pkgs.add(owner(cache[lib]))
    assert elves >= 4  # criu, compel, libcriu.so, libcompel.so
    depends = names(control(deb, "Depends")) - {"python3", "python3-protobuf"}
    assert needed_pkgs == depends, "needed: %s; Depends: %s" % (sorted(needed_pkgs), sorted(depends))


def test_criu_on_path_and_check(installed):
    r = installed.sh("command -v criu; dpkg -S $(command -v criu)", "criu on PATH")
    assert r.stdout.split("\n")[:2] == ["/usr/sbin/criu", "criu: /usr/sbin/criu"], r.stdout
    r = installed.run(["criu", "--version"], "criu --version")
    assert "Version: %s" % UPSTREAM.VERSION in r.stdout
    r = installed.run(["criu", "check"], "criu check", check=False)
    assert r.returncode == 0 and "Looks good" in r.stdout + r.stderr, r.stdout + r.stderr
    r = installed.run(["criu", "--help"], "criu --help")
    assert "--tmp-file" in r.stdout


def test_pycriu_for_usr_bin_python3(installed):
    """/usr/bin/python3 (no PYTHONPATH) finds pycriu in dist-packages, with
    the --tmp-file fields, and drives the installed criu over RPC."""
    prog = ("import pycriu, sys\n"
            "print(pycriu.__file__)\n"
            "print(pycriu.__version__)\n"
            "opts = pycriu.rpc.criu_opts()\n"
            "opts.tmp_files.append('/data'); opts.tmp_file_compress = 'zstd'\n"
            "opts.tmp_file_auto = True; opts.tmp_file_limit = 1 << 20\n"
            "c = pycriu.criu(); c.use_binary('criu'); c.check()\n"
            "print('rpc check ok')\n")
    r = installed.run(["/usr/bin/python3", "-c", prog], "pycriu check over RPC")
    lines = r.stdout.splitlines()
    assert lines[0] == DIST_PACKAGES + "/pycriu/__init__.py", r.stdout
    assert lines[1] == UPSTREAM.VERSION and lines[2] == "rpc check ok", r.stdout


def test_crit_and_man_page(installed):
    r = installed.run(["crit", "--help"], "crit --help")
    assert "show" in r.stdout and "decode" in r.stdout
    r = installed.run(["man", "-w", "criu"], "man -w criu")
    assert r.stdout.strip() == "/usr/share/man/man8/criu.8.gz"
    r = installed.run(["env", "MANWIDTH=100", "man", "-P", "cat", "criu"], "man criu")
    for option in ("--tmp-file path", "--tmp-file-compress", "--tmp-file-auto", "--tmp-file-limit"):
        assert option in r.stdout, "man criu does not show " + option
    for page in ("crit", "criu-ns", "compel"):
        installed.run(["man", "-w", page], "man -w " + page)


class InstalledRunc(Runc):
    """test_runc's container, run by runc inside the throwaway root with
    no --criu: runc runs "criu" from PATH."""

    def __init__(self, root, *args):
        super().__init__(*args)
        self.root = root

    def runc(self, *args, step, log=None, timeout=None):
        self.runs += 1
        return run_bounded(self.root.argv([RUNC, "--root", str(self.state)] + list(args)), "runc " + args[0],
                           step + " (in the throwaway root)", log=log, timeout=timeout, cwd="/")


@pytest.mark.skipif(not have_runc(), reason="runc or busybox-static missing: run scripts/install-deps.sh")
def test_runc_round_trip_with_the_installed_criu(installed, procs, workdir):
    """The container's /data is bind-mounted from a host directory that is
    wiped between checkpoint and restore; tmp-file /data in the root's
    /etc/criu/runc.conf brings it back and the container ticks on. crit
    shows the manifest."""
    installed.sh("mkdir -p /etc/criu && echo 'tmp-file /data' > /etc/criu/runc.conf", "write runc.conf")
    data = workdir / "data"
    data.mkdir()
    ctr = InstalledRunc(installed, procs, workdir, data)
    try:
        ctr.bundle_spec()
        ctr.run()
        checkpoint_ok(ctr)
        # The dump was made by the installed criu: its log names its build.
        gitid = re.search(r"GitID: (\S+)", installed.run(["criu", "--version"], "criu --version").stdout)
        dump_log = (ctr.work / "dump.log").read_text(errors="replace")
        assert gitid and "Version: %s (gitid %s)" % (UPSTREAM.VERSION, gitid.group(1)) in dump_log, \
            log_tail(ctr.work / "dump.log")
        r = installed.run(["crit", "show", ctr.images / "tmp-files-manifest.img"], "crit show")
        manifest = json.loads(r.stdout)
        assert manifest["magic"] == "TMP_FILES_MANIFEST"
        assert manifest["entries"][0]["paths"] == ["/data"]
        before = ctr.log()
        assert before.startswith("start\ntick 1\n")
        wipe(data)
        assert ctr.log() == ""
        restore_ok(ctr)
        assert_carries_on(ctr, before)
    finally:
        ctr.delete()


@pytest.fixture
def debian_criu():
    """Debian's own criu package, as apt downloads it (cached)."""
    DEBIAN_CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(DEBIAN_CACHE.glob("criu_*.deb"))
    if not found:
        r = run_bounded(["apt-get", "download", "criu"], "apt-get download criu",
                        "download Debian's criu", timeout=120, cwd=str(DEBIAN_CACHE))
        found = sorted(DEBIAN_CACHE.glob("criu_*.deb"))
        if r.returncode != 0 or not found:
            pytest.skip("apt-get download criu failed (offline?): %s" % r.stderr.strip()[-500:])
    return found[-1]


def test_installs_over_debians_criu_and_purges(deb, debian_criu):
    """Debian's criu installed first: apt sees this package as an upgrade
    of it and unpacks it over it, the files only Debian's has go; purging
    then leaves no file of either, no bytecode either."""
    assert control(debian_criu, "Package") == "criu"
    theirs, ours = control(debian_criu, "Version"), control(deb, "Version")
    assert version_gt(ours, theirs)
    before = host_state()
    root = ThrowawayRoot()
    try:
        root.dpkg_install(debian_criu)
        assert root.run(["dpkg-query", "-W", "-f", "${Version}", "criu"], "dpkg-query").stdout == theirs
        theirs_files = set(root.run(["dpkg", "-L", "criu"], "dpkg -L criu").stdout.split())
        r = root.run(["apt-get", "install", "-s", deb], "apt-get install -s")
        assert "Inst criu [%s] (%s" % (theirs, ours) in r.stdout, r.stdout
        # As the README has it: apt, which would also fetch missing
        # dependencies (none here). (With --no-download, apt 2.6 fails:
        # "Internal Error, Pathname to install is not absolute".)
        r = root.run(["apt-get", "install", "-y", deb], "apt-get install", timeout=DPKG_TIMEOUT)
        assert "1 upgraded, 0 newly installed" in r.stdout, r.stdout
        assert "Unpacking criu (%s) over (%s)" % (ours, theirs) in r.stdout, r.stdout
        assert root.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "criu"],
                        "dpkg-query").stdout == "install ok installed " + ours
        root.run(["dpkg", "--audit"], "dpkg --audit")
        ours_files = set(root.run(["dpkg", "-L", "criu"], "dpkg -L criu").stdout.split())
        for gone in ("/usr/share/man/man1/amdgpu_plugin.1.gz", DIST_PACKAGES + "/crit-3.17.1-py3.11.egg-info"):
            if gone in theirs_files:
                assert gone not in ours_files and not root.path(gone).exists(), gone
        assert root.path(DIST_PACKAGES + "/pycriu/__pycache__").is_dir()  # postinst compiled it
        r = root.run(["criu", "--version"], "criu --version")
        assert "Version: %s" % UPSTREAM.VERSION in r.stdout

        root.run(["dpkg", "--purge", "criu"], "dpkg --purge criu", timeout=DPKG_TIMEOUT)
        left = [f for f in ours_files if os.path.lexists(root.path(f)) and not root.path(f).is_dir()]
        assert not left, "left after purge: %s" % left
        for d in (DIST_PACKAGES + "/pycriu", DIST_PACKAGES + "/crit", "/usr/include/criu"):
            assert not root.path(d).exists(), d + " left after purge"
        assert root.sh("command -v criu || true", "criu after purge").stdout == ""
    finally:
        root.close()
    assert host_state() == before, "the machine changed"
