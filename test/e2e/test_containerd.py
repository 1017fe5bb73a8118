"""--tmp-file through containerd: ctr c checkpoint, wipe, ctr c restore.

containerd 1.6.20 (Debian 12) runs runc through its shim
(containerd-shim-runc-v2), and runc drives criu over RPC with a
configuration file: /etc/criu/runc.conf, or the file named by the
container's annotation org.criu.config ("ctr run --annotation"); the
annotation is kept in the checkpoint, so the restore reads the same file.
runc execs "criu" from PATH: containerd is started with a directory
holding a "criu" link to the criu under test first on PATH, which the
shim and runc inherit.

The test starts its own containerd (module fixture): its root, state,
socket, /opt directory and ctr's FIFOs all under one temporary
directory, the CRI plugin off, a namespace of its own. There is no
registry: the image is an OCI archive made here from the busybox rootfs
of test_runc.py and imported with "ctr image import". The container
runs the ticking shell of test_runc.py with /data a bind mount of a host
directory that is wiped between checkpoint and restore.

"ctr c checkpoint --task --image --rw" leaves the task running: the
test takes the log as saved from the checkpoint itself (the criu layer
of the checkpoint image holds tmp-files.tar.img, which holds
data/app.log), kills the task, deletes the container, wipes /data and
runs "ctr c restore --live --rw".

Known containerd 1.6 bugs the tests steer clear of: a second checkpoint
of the same container exits 0 with no criu data in it (fixed in
containerd 2.0): each container is checkpointed once; "ctr task rm -f"
after a failed restore hangs: teardown kills the container's shim by pid
(found by its command line, "-id ID -address SOCKET") instead, then
deletes the container. Every ctr run has a time limit (run_bounded);
containerd and every shim of it are killed by pid at the end, and any
mount left under the temporary directory is unmounted.
"""
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BASE, alive, kill_tree, run_bounded, wait_gone
from containers import RESTORE_ERROR, TICKER, assert_carries_on, criu_version_line, make_rootfs, path_with_criu, wipe, Ticking

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"
CRIU_TAR = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
RUN_CONTAINERD = Path("/run/containerd")  # the shim's sockets and runc's state go there

pytestmark = pytest.mark.skipif(not os.path.exists(CONTAINERD) or not os.path.exists("/bin/busybox"),
                                reason="containerd or busybox-static missing: run scripts/install-deps.sh")


def oci_archive(rootfs, out, name):
    """An OCI image archive (for "ctr image import") of one uncompressed
    layer, the tree rootfs, named name."""
    blobs = {}

    def blob(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.add(rootfs, arcname=".")
    layer = blob(buf.getvalue(), "application/vnd.oci.image.layer.v1.tar")
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode(),
                  "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer]}).encode(),
                    "application/vnd.oci.image.manifest.v1+json")
    manifest["annotations"] = {"io.containerd.image.name": name,
                               "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}
    with tarfile.open(out, "w") as t:
        def put(path, data):
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode())
        for digest, data in blobs.items():
            put("blobs/sha256/" + digest, data)


def pids_whose_cmdline(match):
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if match([a.decode(errors="replace") for a in cmd]):
            pids.append(int(d.name))
    return pids


def mounts_under(directory):
    prefix = str(directory) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [l.split()[4] for l in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


class Containerd:
    """A containerd of the test's own, and ctr to talk to it."""

    def __init__(self):
        # a unix socket path is at most 107 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="ctd.", dir=BASE))
        self.sock = self.dir / "ctd.sock"
        self.ns = "criu-e2e-%d" % os.getpid()
        self.image = "localhost/criu-e2e-busybox:%d" % os.getpid()
        # what of /run/containerd was there before: the rest is removed at the end
        self.run_dirs = [d for d in (RUN_CONTAINERD / "s", RUN_CONTAINERD / "runc", RUN_CONTAINERD / "fifo",
                                     RUN_CONTAINERD) if not d.exists()]
        self.env = dict(os.environ, PATH=path_with_criu(self.dir / "bin"))
        self.env.pop("CRIU_CONFIG_FILE", None)
        self.config = self.dir / "config.toml"
        self.config.write_text("\n".join([
            "version = 2",
            'root = "%s"' % (self.dir / "root"),
            'state = "%s"' % (self.dir / "state"),
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
            "[grpc]",
            '  address = "%s"' % self.sock,
            "[ttrpc]",
            '  address = "%s.ttrpc"' % self.sock,
            '[plugins."io.containerd.internal.v1.opt"]',
            '  path = "%s"' % (self.dir / "opt"),
        ]) + "\n")
        self.popen = None

    def start(self):
        with open(self.dir / "containerd.log", "wb") as log:
            self.popen = subprocess.Popen([CONTAINERD, "--config", str(self.config)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, env=self.env, cwd="/", start_new_session=True)
        deadline = time.time() + 30
        while self.ctr("version", step="ctr version", timeout=10).returncode != 0:
            assert self.popen.poll() is None and time.time() < deadline, \
                "containerd did not start:\n" + (self.dir / "containerd.log").read_text(errors="replace")[-2000:]
            time.sleep(0.1)
        rootfs = self.dir / "image-rootfs"
        make_rootfs(rootfs)
        oci_archive(rootfs, self.dir / "image.tar", self.image)
        self.ok("image", "import", self.dir / "image.tar", step="ctr image import")

    def ctr(self, *args, step, timeout=None, log=None):
        cmd = [CTR, "-a", str(self.sock), "-n", self.ns] + [str(a) for a in args]
        return run_bounded(cmd, "ctr " + " ".join(str(a) for a in args[:2]), step,
                           log=log, timeout=timeout, env=self.env)

    def ok(self, *args, step, timeout=None):
        r = self.ctr(*args, step=step, timeout=timeout)
        assert r.returncode == 0, "%s failed (%d):\n%s%s" % (step, r.returncode, r.stdout, r.stderr)
        return r

    def shims(self, cid=None):
        """The pids of this containerd's shims (of container cid only, if given)."""
        def match(a):
            return ("containerd-shim" in a[0] and "-address" in a and a[a.index("-address") + 1] == str(self.sock)
                    and (cid is None or ("-id" in a and a[a.index("-id") + 1] == cid)))
        return pids_whose_cmdline(match)

    def shim_socket(self, cid):
        """Where containerd 1.6 puts the shim's socket: /run/containerd/s/
        sha256(address/namespace/id)."""
        return RUN_CONTAINERD / "s" / hashlib.sha256(("%s/%s/%s" % (self.sock, self.ns, cid)).encode()).hexdigest()

    def stop(self):
        for pid in self.shims():
            kill_tree(pid)
        if self.popen:
            kill_tree(self.popen.pid)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for m in mounts_under(self.dir):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(RUN_CONTAINERD / "runc" / self.ns, ignore_errors=True)
        for d in self.run_dirs:
            try:
                d.rmdir()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def containerd():
    c = Containerd()
    try:
        c.start()
        yield c
    finally:
        c.stop()


class Container(Ticking):
    """One container of the test in the module's containerd."""

    seq = 0

    def __init__(self, ctd, procs, workdir, data):
        Container.seq += 1
        self.ctd = ctd
        self.procs = procs
        self.workdir = Path(workdir)
        self.data = Path(data)
        self.id = "e2e-%d-%d" % (os.getpid(), Container.seq)
        self.ref = "localhost/criu-e2e-ckpt/%s:1" % self.id
        self.pid = None

    def run(self, annotation=None):
        args = ["run", "-d", "--fifo-dir", self.workdir / "fifo",
                "--mount", "type=bind,src=%s,dst=/data,options=rbind:rw" % self.data]
        if annotation:
            args += ["--annotation", "org.criu.config=%s" % annotation]
        self.ctd.ok(*args, self.ctd.image, self.id, "sh", "-c", TICKER, step="ctr run -d " + self.id, timeout=60)
        self.started()
        self.wait_ticks(3)

    def task(self):
        """(pid, status) of the container's task, or None."""
        r = self.ctd.ctr("task", "ls", step="ctr task ls", timeout=30)
        for line in r.stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == self.id:
                return int(f[1]), f[2]
        return None

    def started(self):
        t = self.task()
        assert t and t[1] == "RUNNING", t
        self.pid = t[0]
        self.procs.track(self.pid)

    def checkpoint(self):
        return self.ctd.ctr("container", "checkpoint", "--task", "--image", "--rw", self.id, self.ref,
                            step="ctr c checkpoint of %s" % self.id)

    def kill_and_remove(self):
        """Stop the task the checkpoint left running, delete the container."""
        self.ctd.ok("task", "kill", "-s", "KILL", self.id, step="ctr task kill " + self.id, timeout=30)
        wait_gone(self.pid)
        deadline = time.time() + 10
        while self.task()[1] != "STOPPED":
            assert time.time() < deadline, self.task()
            time.sleep(0.05)
        self.ctd.ok("task", "rm", self.id, step="ctr task rm " + self.id, timeout=30)
        self.ctd.ok("container", "rm", self.id, step="ctr container rm " + self.id, timeout=30)

    def restore(self):
        return self.ctd.ctr("container", "restore", "--live", "--rw", self.id, self.ref,
                            step="ctr c restore of %s" % self.id)

    def criu_images(self):
        """name -> bytes of the criu images in the checkpoint image ref."""
        r = self.ctd.ok("image", "ls", step="ctr image ls", timeout=30)
        digest = [l.split()[2] for l in r.stdout.splitlines()[1:] if l.split()[0] == self.ref]
        assert digest, "no checkpoint image %s:\n%s" % (self.ref, r.stdout)
        index = json.loads(self.ctd.ok("content", "get", digest[0], step="ctr content get", timeout=30).stdout)
        layers = [m["digest"] for m in index["manifests"] if m["mediaType"] == CRIU_TAR]
        if not layers:
            return {}
        data = subprocess.run([CTR, "-a", str(self.ctd.sock), "-n", self.ctd.ns, "content", "get", layers[0]],
                              capture_output=True, check=True, timeout=60).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            return {m.name.lstrip("./"): t.extractfile(m).read() for m in t.getmembers() if m.isfile()}

    def delete(self):
        """By pid: the shim (and the container's processes, its children),
        then the container record; "ctr task rm -f" can hang."""
        for pid in self.ctd.shims(self.id):
            kill_tree(pid)
            try:
                wait_gone(pid)
            except AssertionError:
                pass
        if self.pid:
            kill_tree(self.pid)
        self.ctd.ctr("container", "rm", self.id, step="ctr container rm " + self.id, timeout=30)
        self.ctd.shim_socket(self.id).unlink(missing_ok=True)
        # "ctr c restore" has no --fifo-dir: its FIFOs are in /run/containerd/fifo/N/
        for fifo in (RUN_CONTAINERD / "fifo").glob("*/%s-std*" % self.id):
            fifo.unlink(missing_ok=True)
            try:
                fifo.parent.rmdir()
            except OSError:
                pass


@pytest.fixture
def ctd(containerd, procs, workdir, tmpdir_tmp, runc_conf):
    """A container; /etc/criu/runc.conf absent (the host's comes back)."""
    data = tmpdir_tmp / "data"
    data.mkdir()
    c = Container(containerd, procs, workdir, data)
    yield c
    c.delete()


def saved_log(images):
    """data/app.log as the checkpoint's tmp-files archive holds it."""
    with tarfile.open(fileobj=io.BytesIO(images["tmp-files.tar.img"])) as t:
        return t.extractfile("data/app.log").read().decode()


def checkpoint_ok(ctd):
    r = ctd.checkpoint()
    assert r.returncode == 0, "ctr c checkpoint failed: %s%s" % (r.stdout, r.stderr)
    images = ctd.criu_images()
    assert "inventory.img" in images, "no criu images in the checkpoint: %s" % sorted(images)
    return images


def round_trip(ctd):
    images = checkpoint_ok(ctd)
    # Only this project's criu writes these two images
    assert "tmp-files.tar.img" in images and "tmp-files-manifest.img" in images, sorted(images)
    before = saved_log(images)
    assert before.startswith("start\ntick 1\n")
    ctd.kill_and_remove()
    wipe(ctd.data)
    r = ctd.restore()
    assert r.returncode == 0, "ctr c restore failed: %s%s" % (r.stdout, r.stderr)
    ctd.started()
    assert_carries_on(ctd, before)


def test_runc_conf(ctd, runc_conf):
    runc_conf("tmp-file /data\n")
    ctd.run()
    round_trip(ctd)


def test_annotation_org_criu_config(ctd):
    """The annotation route; "log-file" in the same file keeps criu's log,
    which the shim deletes with its work directory after a checkpoint
    that succeeds: its version line is the criu under test's."""
    conf, log = ctd.workdir / "criu.conf", ctd.workdir / "criu-dump.log"
    conf.write_text("tmp-file /data\nlog-file %s\n" % log)
    ctd.run(annotation=conf)
    images = checkpoint_ok(ctd)
    text = log.read_text(errors="replace")
    assert criu_version_line() in text and "tmp-files: Saving 1 --tmp-file path(s)" in text, text[:500]
    assert "tmp-files.tar.img" in images
    log.unlink()
    before = saved_log(images)
    ctd.kill_and_remove()
    wipe(ctd.data)
    r = ctd.restore()
    assert r.returncode == 0, "ctr c restore failed: %s%s" % (r.stdout, r.stderr)
    ctd.started()
    assert_carries_on(ctd, before)


def test_without_option_restore_fails(ctd):
    ctd.run()
    images = checkpoint_ok(ctd)
    assert "tmp-files.tar.img" not in images
    ctd.kill_and_remove()
    wipe(ctd.data)
    r = ctd.restore()
    assert r.returncode != 0
    # What ctr's user sees: runc's line and the log's path
    m = re.search(r"criu failed: type NOTIFY errno 0\s+log file: (\S+/restore\.log)", r.stderr)
    assert m, r.stderr
    text = Path(m.group(1)).read_text(errors="replace")
    assert criu_version_line() in text and RESTORE_ERROR in text, text[-2000:]
    assert ctd.task()[1] != "RUNNING", ctd.task()


def test_bad_value_fails_checkpoint_container_runs_on(ctd):
    conf = ctd.workdir / "criu.conf"
    conf.write_text("tmp-file /data\ntmp-file-compress bogus\n")
    ctd.run(annotation=conf)
    r = ctd.checkpoint()
    assert r.returncode != 0
    # What ctr's user sees: runc's line with the log's path; the log names
    # the option and the value
    m = re.search(r"criu failed: type DUMP errno 56 path= (\S+/criu-dump\.log)", r.stderr)
    assert m, r.stderr
    text = Path(m.group(1)).read_text(errors="replace")
    assert criu_version_line() in text
    assert "--tmp-file-compress bogus: must be gzip, zstd or none" in text, text[-2000:]
    assert ctd.task() == (ctd.pid, "RUNNING")
    n = ctd.ticks()
    ctd.wait_ticks(n + 3)
    assert alive(ctd.pid)
