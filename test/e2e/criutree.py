"""The built CRIU tree that the RPC, libcriu and pycriu tests use.

CRIU_TREE names the tree (default: the tree of the criu binary in CRIU,
else build/criu-VERSION, VERSION from scripts/upstream.conf: see
conftest.TREE). libcriu is TREE/lib/c/libcriu.so with the header
TREE/lib/c/criu.h; pycriu is TREE/lib/pycriu with the rpc_pb2 generated
from TREE/images/rpc.proto by "make lib".
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import CRIU, TREE, TimeLimit

LIBCRIU = TREE / "lib/c/libcriu.so"

sys.path.insert(0, str(TREE / "lib"))
import pycriu  # noqa: E402
from pycriu import rpc_pb2 as rpc  # noqa: E402


def build_libcriu_program(src, outdir, extra=(), warnings=("-Wall", "-Werror")):
    """Compile a C program (src, and the sources in extra) against the
    tree's libcriu; returns its path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # libcriu.so has the soname libcriu.so.2: give the loader that name.
    soname = subprocess.run(["readelf", "-d", str(LIBCRIU)], capture_output=True, text=True,
                            check=True).stdout.split("Library soname: [")[1].split("]")[0]
    link = outdir / soname
    if not link.exists():
        link.symlink_to(LIBCRIU)
    exe = outdir / Path(src).stem
    subprocess.run(["gcc"] + list(warnings) + ["-o", str(exe), str(src)] + [str(e) for e in extra] + [
                    "-iquote", str(TREE / "lib/c"), "-iquote", str(TREE / "images"),
                    "-iquote", str(TREE / "criu/include"),
                    "-L", str(outdir), "-l:" + soname, "-Wl,-rpath," + str(outdir)],
                   check=True, capture_output=True, text=True)
    return exe


def swrk_call(req, images, sndbuf=None, timeout=None):
    """One raw RPC request to "criu swrk" over a socketpair, as libcriu does,
    within the time limit (conftest.TimeLimit: CRIU_TIMEOUT unless timeout).

    The images directory is passed as images_dir_fd, an fd of ours that
    criu opens through /proc/OUR_PID/fd, as libcriu and pycriu pass it.
    Returns (response, exit status of criu swrk).
    """
    fd = os.open(images, os.O_DIRECTORY)
    step = "RPC %s request%s" % (rpc.criu_req_type.Name(req.type),
                                 " of pid %d" % req.opts.pid if req.opts.pid else "")
    log = Path(images) / req.opts.log_file if req.opts.log_file else None
    try:
        req.opts.images_dir_fd = fd
        return _swrk_call(req, sndbuf, TimeLimit("criu swrk", step, log, timeout))
    finally:
        os.close(fd)


def _swrk_call(req, sndbuf, limit):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if sndbuf:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    p = subprocess.Popen([CRIU, "swrk", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    theirs.close()
    try:
        ours.settimeout(limit.remaining())
        ours.send(req.SerializeToString())
        ours.settimeout(limit.remaining())
        size = len(ours.recv(1, socket.MSG_TRUNC | socket.MSG_PEEK))
        resp = rpc.criu_resp()
        resp.ParseFromString(ours.recv(size))
    except socket.timeout:
        limit.fail(p)
    finally:
        ours.close()
    return resp, limit.wait(p)


def pycriu_call(client, action, step, log=None, timeout=None):
    """getattr(client, action)() of a pycriu.criu using its binary ("criu
    swrk"), within the time limit: the swrk process pycriu forks is killed
    when the time is up. Returns what pycriu returns, or raises what it raises."""
    limit = TimeLimit("criu swrk (pycriu %s)" % action, step, log, timeout)
    with limit.watching(lambda: getattr(client._comm, "swrk", None)):
        return getattr(client, action)()


def request(typ, log, **fields):
    """A criu_req of type typ ("DUMP", "RESTORE"), log at level 4."""
    req = rpc.criu_req()
    req.type = getattr(rpc, typ)
    req.opts.images_dir_fd = -1  # required; set by swrk_call()
    req.opts.log_file = log
    req.opts.log_level = 4
    for k, v in fields.items():
        f = getattr(req.opts, k)
        if isinstance(v, (list, tuple)):
            f.extend(v)
        else:
            setattr(req.opts, k, v)
    return req
