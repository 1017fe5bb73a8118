"""--tmp-file for a tree in its own mount namespace, and restore with --root.

A "container" here is tmpapp.py started by "unshare --mount" after
pivot_root into a root made by the test: an overlay of / (so that its
files differ from the host's) or a bind of /, with /proc and, for the
tmpfs case, a private tmpfs on /tmp. criu dumps the tree with its mount
namespace and restores it with --root, which a mount namespace needs.
The root at restore is made in a private mount namespace of the restoring
criu ("unshare --mount" around criu restore). Every mount lives in a
namespace that goes away with the processes in it; the host's mount table
is never touched.
"""
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import APPS, alive, read_archive, wait_gone, wait_report

PRIVATE_NS = ["unshare", "--mount", "--propagation", "private"]


def overlay_of_root(root, layers):
    """sh: mount an overlay of the host's / at root, writes go to layers/up."""
    (layers / "up").mkdir(parents=True)
    (layers / "work").mkdir()
    return 'mount -t overlay overlay -o lowerdir=/,upperdir=%s,workdir=%s %s' % (
        layers / "up", layers / "work", root)


def bind_of_root(root):
    """sh: a non-recursive bind of the host's / at root: / only, no submounts."""
    return "mount --bind / %s" % root


class Container:
    """tmpapp.py in a mount namespace of its own, pivot_root'ed into root."""

    def __init__(self, procs, workdir, app_dir, report):
        self.procs = procs
        self.workdir = workdir
        self.app_dir = Path(app_dir)
        self.report = report and Path(report)  # where the host reads the report
        self.pid = None
        self.popen = None

    def start(self, mount_root, inner_report, tmpfs_tmp=False):
        root = self.workdir / "root"
        root.mkdir()
        d = self.app_dir
        script = "\n".join([
            "set -e",
            mount_root(root),
            "mount -t proc proc %s/proc" % root,
            "mount -t tmpfs tmpfs %s/tmp" % root if tmpfs_tmp else ":",
            "mkdir -p %s%s" % (root, d),
            "printf 'mode=fast\\n' > %s%s/app.conf" % (root, d),
            "printf 'HEADER--------------' > %s%s/state" % (root, d),
            "cd %s" % root,
            "pivot_root . mnt",
            "umount -l /mnt",
            # Every fd of the tree is inside its own mount namespace.
            "exec /usr/bin/python3 %s %s %s <%s/app.conf >>%s/app.log 2>&1" % (
                APPS / "tmpapp.py", d, inner_report, d, d),
        ])
        self.popen = self.procs.start(PRIVATE_NS + ["sh", "-c", script],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.popen.pid
        if self.report is None:
            self.report = self.in_tree(inner_report)
        self.wait_report(1)

    def view(self):
        return json.loads(self.report.read_text())

    def wait_report(self, n, timeout=10):
        return wait_report(self.view, lambda v: v["ticks"] >= n,
                           "container %s did not reach tick %d" % (self.pid, n), timeout, self.popen)

    def tick(self):
        self.report.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        return self.wait_report(0)

    def wait_dead(self):
        self.popen.wait(timeout=10)
        self.popen = None
        wait_gone(self.pid)

    def in_tree(self, path):
        """A path as the (restored) tree sees it."""
        return Path("/proc/%d/root%s" % (self.pid, path))


def restore_in_private_ns(criu, mount_root, root, *args):
    root.mkdir(exist_ok=True)
    wrapper = PRIVATE_NS + ["sh", "-c", '%s && exec "$0" "$@"' % mount_root(root)]
    return criu.restore("--root", str(root), *args, wrapper=wrapper)


def members(images):
    return {m.name: data for m, data in read_archive(images)}


@pytest.fixture
def host_copy(tmpdir_tmp):
    """The host's own file at the path the tree uses: must never be touched."""
    d = tmpdir_tmp / "app"
    d.mkdir()
    (d / "app.conf").write_text("host\n")
    return d


def test_root_overlay_container(procs, workdir, criu, host_copy):
    """--root: the saved files land under the new root, and nowhere else."""
    inner_report = workdir / "report.json"
    up1, up2 = workdir / "layers1", workdir / "layers2"
    # Read through the tree's root: the upper layer must not be touched.
    c = Container(procs, workdir, host_copy, None)
    c.start(lambda r: overlay_of_root(r, up1), inner_report)
    before = c.tick()
    assert before["conf"] == "mode=fast\n"

    r = criu.dump(c.pid, "--tmp-file", str(host_copy))
    assert r.returncode == 0, r
    c.wait_dead()
    # The tree's files were saved, as it sees them, not the host's.
    saved = members(criu.images)
    rel = str(host_copy).lstrip("/")
    assert saved[rel + "/app.conf"] == b"mode=fast\n"
    assert saved[rel + "/state"].startswith(b"HEAD")
    log = saved[rel + "/app.log"].decode()
    shutil.rmtree(up1)  # the container's files are gone

    # The new root has none of the tree's files: only the host's app.conf.
    root2 = workdir / "root2"
    r = restore_in_private_ns(criu, lambda rt: overlay_of_root(rt, up2), root2)
    assert r.returncode == 0, r
    procs.track(c.pid)
    assert alive(c.pid)
    c.report = c.in_tree(inner_report)
    after = c.tick()
    assert after["ticks"] == before["ticks"] + 1
    assert after["conf"] == "mode=fast\n"
    assert after["log_offset"] == before["log_offset"] + len("tick %d\n" % after["ticks"])
    assert c.in_tree(host_copy / "app.log").read_text() == log + "tick %d\n" % after["ticks"]

    # Under the new root (its upper layer)...
    assert (up2 / "up" / rel / "app.conf").read_text() == "mode=fast\n"
    # ...and nowhere else: the host's directory is as it was.
    assert sorted(os.listdir(host_copy)) == ["app.conf"]
    assert (host_copy / "app.conf").read_text() == "host\n"
    assert not [n for n in os.listdir("/tmp") if n.startswith(".criu-tmp-files")]


def start_tmpfs_container(procs, workdir, host_copy):
    report = workdir / "report.json"
    c = Container(procs, workdir, host_copy, report)
    c.start(bind_of_root, report, tmpfs_tmp=True)
    return c


def test_private_tmpfs_tmp_saves_the_trees_file(procs, workdir, criu, host_copy):
    """The tree's own /tmp/... is saved, not the host's file at that path."""
    c = start_tmpfs_container(procs, workdir, host_copy)
    before = c.tick()
    assert before["conf"] == "mode=fast\n"
    assert c.in_tree(host_copy / "app.conf").read_text() == "mode=fast\n"

    r = criu.dump(c.pid, "--tmp-file", str(host_copy))
    assert r.returncode == 0, r
    c.wait_dead()
    saved = members(criu.images)
    rel = str(host_copy).lstrip("/")
    assert sorted(saved) == [rel, rel + "/app.conf", rel + "/app.log", rel + "/state"]
    assert saved[rel + "/app.conf"] == b"mode=fast\n"
    assert (host_copy / "app.conf").read_text() == "host\n"

    # criu restores the mount namespace; the tree sees its own file again.
    r = restore_in_private_ns(criu, bind_of_root, workdir / "root2")
    assert r.returncode == 0, r
    procs.track(c.pid)
    after = c.tick()
    assert after["ticks"] == before["ticks"] + 1
    assert after["conf"] == "mode=fast\n"
    assert c.in_tree(host_copy / "state").read_bytes().startswith(b"HEAD")


def test_private_tmpfs_tmp_restore_goes_inside_the_namespace(procs, workdir, criu, host_copy):
    """At restore the files go into the restored namespace, after its mounts."""
    c = start_tmpfs_container(procs, workdir, host_copy)
    c.tick()
    r = criu.dump(c.pid, "--tmp-file", str(host_copy))
    assert r.returncode == 0, r
    c.wait_dead()

    r = restore_in_private_ns(criu, bind_of_root, workdir / "root2")
    assert r.returncode == 0, r
    procs.track(c.pid)
    assert c.tick()["conf"] == "mode=fast\n"
    # Nothing was written under the tmpfs that the tree's /tmp covers.
    assert sorted(os.listdir(host_copy)) == ["app.conf"]
    assert (host_copy / "app.conf").read_text() == "host\n"
