#!/usr/bin/python3
"""Frozen time that --tmp-file-precopy adds when nothing changes (issue 22).

Two cases, on a tmpfs /tmp in a private mount namespace, images on another
tmpfs (the set-up of bench/run.py, whose Runner this uses):

  small   10,000 files of 4 KiB
  mixed   256 MiB of incompressible data + 2,000 files of 2 KiB

and three variants, interleaved in a shuffled order in each repetition:

  without   patched criu, dump without --tmp-file
  precopy   dump --tmp-file DIR --tmp-file-compress=none --tmp-file-precopy
  copy      cp -a of the same directory into the images filesystem

Added = frozen(precopy) - frozen(without) (CRIU's frozen_time from the
stats-dump image), as a ratio of the copy's wall time, both medians; the
per-repetition ratios give the spread. Each dump is restored (after the
directory is moved away) and compared with the original, as in run.py.
The dump log of the last precopy run says whether the frozen pass used
the change record (tmp-files-watch.c) or fell back to the full check.

Usage (as root): bench/precopy_frozen.py [--reps N] [--cases small,mixed]
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  bench/run.py: Runner, mounts, the holder

MiB = 1 << 20
VARIANTS = ("without", "precopy", "copy")


def make_mixed(directory, big_mib, files, size):
    directory.mkdir()
    with open(directory / "big.bin", "wb") as f:
        for _ in range(big_mib):
            f.write(os.urandom(MiB))
    small = directory / "small"
    small.mkdir()
    for i in range(files):
        (small / ("f%04d" % i)).write_bytes(os.urandom(size))


CASES = {
    "small": {"name": "small", "kind": "files", "files": 10000, "file_size": 4096,
              "bytes": 10000 * 4096, "desc": "10,000 files × 4 KiB"},
    "mixed": {"name": "mixed", "kind": "mixed", "bytes": 256 * MiB + 2000 * 2048,
              "desc": "256 MiB + 2,000 files × 2 KiB"},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cases", default="small,mixed")
    ap.add_argument("--in-ns", action="store_true", help=argparse.SUPPRESS)
    # run.Runner's other settings: memory warmed before each step, no logs kept
    ap.set_defaults(no_warm=False, keep_logs=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("must run as root")
    if not args.in_ns:  # our tmpfs mounts in a private mount namespace (run.py's re-executes run.py)
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "/usr/bin/python3",
                              str(Path(__file__).resolve()), "--in-ns"] + sys.argv[1:])
    run.ctypes.CDLL(None, use_errno=True).prctl(run.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    run.WORK.mkdir(parents=True, exist_ok=True)
    holder = run.WORK / "holder"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(holder), str(run.BENCH / "holder.c")], check=True)
    criu = run.WORK / "criu-precopy-frozen"
    shutil.copy2(run.CRIU, criu)
    import pycriu  # noqa: F401  before the build tree may change
    cases = [CASES[c] for c in args.cases.split(",")]
    total = sum(c["bytes"] for c in cases)
    data_mnt = run.data_mountpoint()
    img_mnt = run.WORK / "images"
    res = {c["name"]: {v: [] for v in VARIANTS} for c in cases}
    logs = {}
    load = run.loadavg()
    try:
        run.mount_tmpfs(data_mnt, 2 * total + 256 * MiB)
        run.mount_tmpfs(img_mnt, 2 * max(c["bytes"] for c in cases) + 512 * MiB)
        data = data_mnt / "criu-bench"
        data.mkdir()
        rng = random.Random(7)
        pool = run.text_pool(rng, 4096)
        for c in cases:
            if c["kind"] == "mixed":
                make_mixed(data / c["name"], 256, 2000, 2048)
            else:
                run.make_case(rng, pool, c, data / c["name"])
        # Every ctime older than the start of the pre-copy (a younger one is archived again by rule)
        time.sleep(0.1)
        runner = run.Runner(args, criu, None, holder, data, img_mnt)
        rmtree = shutil.rmtree

        def keep_log(path, *a, **kw):  # the tmp-files lines of each precopy dump's log
            log = Path(path) / "dump.log"
            if Path(path).name.startswith("precopy.") and log.exists():
                logs.setdefault(current[0], []).append(
                    [ln for ln in log.read_text(errors="replace").splitlines() if "tmp-files:" in ln])
            return rmtree(path, *a, **kw)
        run.shutil.rmtree = keep_log
        current = [None]
        for c in cases:
            for rep in range(args.reps):
                order = list(VARIANTS)
                random.Random(rep).shuffle(order)
                for v in order:
                    current[0] = c["name"]
                    if v == "copy":
                        r = runner.copy_variant(c, v)
                    else:
                        r = runner.dump_variant(c, v, check_content=(rep == 0))
                    res[c["name"]][v].append(r)
    finally:
        run.kill_all()
        run.umount_all()
    print("bench/precopy_frozen.py --reps %d --cases %s (load %s at the start, %s at the end)"
          % (args.reps, args.cases, load, run.loadavg()))
    print()
    print("| case | frozen without | frozen precopy | added | copy (cp -a) | added / copy, median | per rep, min–max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        r = res[c["name"]]
        w = [x["frozen_ms"] for x in r["without"]]
        p = [x["frozen_ms"] for x in r["precopy"]]
        cp = [x["frozen_ms"] for x in r["copy"]]
        added = statistics.median(p) - statistics.median(w)
        per = sorted((pi - wi) / ci for pi, wi, ci in zip(p, w, cp))
        print("| %s | %.1f ms | %.1f ms | %.1f ms | %.0f ms | %.1f%% | %.1f%% – %.1f%% |" % (
            c["desc"], statistics.median(w), statistics.median(p), added, statistics.median(cp),
            100 * added / statistics.median(cp), 100 * per[0], 100 * per[-1]))
    print()
    for c in cases:
        name = c["name"]
        print("%s: precopy frozen ms, every rep: %s; copy ms: %s" % (
            name, " ".join("%.1f" % x["frozen_ms"] for x in res[name]["precopy"]),
            " ".join("%.0f" % x["frozen_ms"] for x in res[name]["copy"])))
        for i, lines in enumerate(logs.get(name, [])):
            for ln in lines:
                print("    rep %d: %s" % (i, ln[:160]))


if __name__ == "__main__":
    main()
