#!/usr/bin/python3
"""Where a bench/run.py restore's time goes, and what the memory it
writes into does to it (the restore target's 3.3x to 3.9x, see run.py's
docstring, "Memory").

  restore_phases.py [--mib N] [--reps N] [--ballast-mib N] [--perf] [VARIANT,...]

As root. In a private mount namespace: run.py's data (N MiB, half random
bytes, half text, the holder with its files open) on a tmpfs /tmp, the
images on another tmpfs; every variant in a shuffled order in each
repetition, one run:

  without        dump and restore -d -v4 without --tmp-file
  none           dump --tmp-file-compress none, directory moved aside,
                 restore -d -v4 (as run.py)
  copy           cp -a of the directory into the images tmpfs (run.py's)
  copy_data      cp -a of the directory next to it, on the data tmpfs
                 (restore_in_place.py's)
  X_cold         X after writing (and holding, until X is done) a
                 ballast of --ballast-mib on a third tmpfs: the memory
                 the guest freed last is used up, X writes its new pages
                 into memory the guest has not used recently
  X_coldwarm     X_cold, then run.py's warm-up before X (2N MiB
                 written into anonymous memory and freed)

Prints, per variant, the median wall time (all values) and, for
restores, the phases from criu's -v4 log (ms): start to the stage,
the stream (criu reads the archive, checks it, writes the files into
the stage), the check, the placing, the end. --perf: each restore and
copy under "perf record -F 5000", then the top symbols of each.
Logs and profiles stay in build/bench-phases/.
"""
import argparse
import ctypes
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  run.py's data, holder and helpers

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--mib", type=int, default=512)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ballast-mib", type=int, default=4096)
ap.add_argument("--perf", action="store_true")
ap.add_argument("variants", nargs="?", default="without,none,none_cold,none_coldwarm,copy,copy_cold,copy_coldwarm")
args = ap.parse_args()
if os.geteuid() != 0:
    sys.exit("restore_phases: must run as root")
if os.environ.get("PHASES_IN_NS") != "1":
    os.environ["PHASES_IN_NS"] = "1"
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable] + sys.argv)
ctypes.CDLL(None).prctl(run.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

CRIU = str(run.CRIU)
MIB = args.mib
OUT = run.ROOT / "build/bench-phases"
shutil.rmtree(OUT, ignore_errors=True)
OUT.mkdir(parents=True)
run.WORK.mkdir(parents=True, exist_ok=True)
holder = run.WORK / "holder"
subprocess.run(["gcc", "-O2", "-Wall", "-o", str(holder), str(run.BENCH / "holder.c")], check=True)
img = run.WORK / "images"
BALLAST = OUT / "ballast"
data_mnt = run.data_mountpoint()


def ballast():
    with open(BALLAST / "b", "wb", buffering=0) as f:
        for _ in range(args.ballast_mib):
            f.write(b"\2" * (1 << 20))


class Warm:
    """run.py's warm-up: its Runner.warm()"""
    args = argparse.Namespace(no_warm=False)


def warm():
    run.Runner.warm(Warm, MIB * run.MiB)


MARKS = (("stage", "Staging the --tmp-file"), ("streamed", "members checked"),
         ("checked", "matches its manifest"), ("placed", "written\n"), ("finished", "Restore finished"))


def phases(log):
    out = {}
    for ln in open(log, errors="replace"):
        if ln.startswith("("):
            t = float(ln[1:10]) * 1000
            out["last"] = t
            for key, pat in MARKS:
                if pat in ln and key not in out:
                    out[key] = t
    return out


seq = [0]


def perf(name):
    return ["perf", "record", "-q", "-F", "5000", "-o", str(OUT / (name + ".perf")), "--"] if args.perf else []


def one(directory, v):
    seq[0] += 1
    name = "%s.%d" % (v, seq[0])
    if v.startswith("copy"):
        dst = (directory.parent if v.startswith("copy_data") else img) / ("cp.%d" % seq[0])
        if "cold" in v:
            ballast()
        if "warm" in v:
            warm()
        t = time.monotonic()
        subprocess.run(perf(name) + ["cp", "-a", str(directory), str(dst)], check=True, timeout=300)
        r = {"ms": (time.monotonic() - t) * 1000}
        shutil.rmtree(dst)
        if "cold" in v:
            os.unlink(BALLAST / "b")
        return r
    images = img / name
    images.mkdir()
    h = run.start_holder(holder, directory, run.WORK / "ready")
    pid = h.pid
    extra = [] if v.startswith("without") else ["--tmp-file", str(directory), "--tmp-file-compress=none"]
    p, _ = run.run_timed([CRIU, "dump", "-t", str(pid), "-D", str(images), "-o", "dump.log"] + extra)
    if p.returncode:
        raise RuntimeError("dump: %s" % run.log_tail(images / "dump.log"))
    h.wait(timeout=20)
    run.wait_gone(pid)
    aside = None
    if extra:
        aside = directory.parent / (".aside-" + directory.name)
        directory.rename(aside)
    if "cold" in v:
        ballast()
    if "warm" in v:
        warm()
    cmd = perf(name) + [CRIU, "restore", "-d", "-D", str(images), "-o", "restore.log", "-v4"]
    p, wall = run.run_timed(cmd, timeout=300)
    if p.returncode:
        raise RuntimeError("restore: %s" % run.log_tail(images / "restore.log"))
    run.PIDS.add(pid)
    os.kill(pid, 9)
    run.wait_gone(pid)
    if "cold" in v:
        os.unlink(BALLAST / "b")
    r = phases(images / "restore.log")
    r["ms"] = wall * 1000
    shutil.copy(images / "restore.log", OUT / (name + ".log"))
    if aside:
        shutil.rmtree(directory)
        aside.rename(directory)
    shutil.rmtree(images)
    return r


res = {}
load_start = open("/proc/loadavg").read().split()[:3]
try:
    run.mount_tmpfs(data_mnt, 4 * MIB * run.MiB + 512 * run.MiB)
    run.mount_tmpfs(img, 2 * MIB * run.MiB + 512 * run.MiB)
    BALLAST.mkdir()
    run.mount_tmpfs(BALLAST, args.ballast_mib * run.MiB + 64 * run.MiB)
    data = data_mnt / "criu-bench"
    data.mkdir()
    rng = random.Random(7)
    case = {"name": "%dMiB" % MIB, "kind": "size", "bytes": MIB * run.MiB}
    run.make_case(rng, run.text_pool(rng), case, data / case["name"])
    variants = args.variants.split(",")
    for rep in range(args.reps):
        order = list(variants)
        random.Random(rep).shuffle(order)
        for v in order:
            res.setdefault(v, []).append(one(data / case["name"], v))
finally:
    run.kill_all()
    run.umount_all()

med = statistics.median
print("restore_phases.py %s: %d MiB (run.py's data), median of %d (all values), load %s to %s" % (
    " ".join(sys.argv[1:]), MIB, args.reps, "/".join(load_start), "/".join(open("/proc/loadavg").read().split()[:3])))
for v in variants:
    rs = res[v]
    line = "%-16s %6.0f ms (%s)" % (v, med([r["ms"] for r in rs]), " ".join("%.0f" % r["ms"] for r in rs))
    if "stage" in rs[0]:
        def d(a, b):
            return med([r[b] - r[a] for r in rs if a in r and b in r])
        line += "  | to stage %.0f, stream %.0f, check %.0f, place %.0f, end %.0f" % (
            med([r["stage"] for r in rs]), d("stage", "streamed"), d("streamed", "checked"),
            d("checked", "placed"), d("placed", "finished"))
    print(line)
if args.perf:
    for f in sorted(OUT.glob("*.perf"), key=lambda f: int(f.name.split(".")[-2])):
        top = subprocess.run(["perf", "report", "-i", str(f), "--sort", "sym", "--stdio", "-q"],
                             capture_output=True, text=True).stdout.splitlines()[:4]
        print("%s: %s" % (f.name, "; ".join(" ".join(x.split()) for x in top)))
