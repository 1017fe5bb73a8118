#!/usr/bin/python3
"""Wiped restores of one --tmp-file dump by several criu binaries, interleaved.

Usage: restore_ab.py SIZE_MIB RUNS NAME=CRIU [NAME=CRIU ...] [--compress none|zstd|gzip]
(as root; re-executes itself in a private mount namespace).

The tree of bench/restore_in_place.py (a tmpfs /tmp, SIZE MiB of random
data and 2,000 files of 2 KiB, images on another tmpfs), dumped once by
the first CRIU with --tmp-file and once without. Each run: a `cp -a` of
the data (the baseline), a restore of the dump without --tmp-file
("plain"), then a wiped restore (the directory removed) by each CRIU, in
turn, the order reversed every other run, so that the binaries share
whatever else the machine runs. Every restore of the first run is
compared with the saved tree (diff -r).

Printed, median of RUNS with the range: each restore's time and its
"added" time (minus "plain") over the copy, and its phases from its own
-v4 log (ms): up to the stream ("Restoring ..."), the stream ("members
checked"), the check of the stage ("matches its manifest") and the
placing ("kept as they were"). Every criu run is bounded.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import restore_in_place as rip  # noqa: E402

PHASES = (("up to the stream", r"tmp-files: Restoring"), ("stream", r"tmp-files: \d+ members checked"),
          ("check", r"tmp-files: The extracted archive matches"),
          ("place", r"tmp-files: \d+ entr(?:y|ies) kept as they were, \d+ written"))


def main():
    compress = "none"
    args = sys.argv[1:]
    if "--compress" in args:
        i = args.index("--compress")
        compress = args[i + 1]
        del args[i:i + 2]
    size, runs = int(args[0]), int(args[1])
    bins = [(n, os.path.abspath(b)) for n, b in (a.split("=", 1) for a in args[2:])]
    images = "/var/tmp/criu-bench-ab"
    app = rip.make_tree(size, images)
    pid = rip.dump(bins[0][1], images + "/d", app, True, compress)
    plain_pid = rip.dump(bins[0][1], images + "/p", app, False)
    shutil.move(app, "/tmp/app.keep")
    times = {k: [] for k in ["copy", "plain"] + [n for n, _ in bins]}
    phases = {n: {p: [] for p, _ in PHASES} for n, _ in bins}
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    for run in range(runs):
        times["copy"].append(rip.run(["cp", "-a", "/tmp/app.keep", "/tmp/copy"], "cp -a"))
        shutil.rmtree("/tmp/copy")
        times["plain"].append(rip.restore(bins[0][1], images + "/p", plain_pid))
        for name, criu in (bins if run % 2 == 0 else bins[::-1]):
            times[name].append(rip.restore(criu, images + "/d", pid))
            with open(images + "/d/restore.log") as f:
                log = f.read()
            last = 0.0
            for p, pat in PHASES:
                m = re.search(r"^\((\d+\.\d+)\) " + pat, log, re.M)
                t = float(m.group(1)) * 1000 if m else last
                phases[name][p].append(t - last)
                last = t
            if run == 0:
                d = subprocess.run(["diff", "-r", "/tmp/app.keep", app], capture_output=True, text=True)
                if d.returncode:
                    sys.exit("%s restored something else: %s" % (name, d.stdout[:1000]))
            shutil.rmtree(app)
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print("restore_ab.py %s: %d MiB + 2,000 files of 2 KiB, %s, median of %d (range)" %
          (" ".join(sys.argv[1:]), size, compress, runs))
    print("| case | time | added / copy | %s |" % " | ".join(p for p, _ in PHASES))
    print("|---|---:|---:|%s" % ("---:|" * len(PHASES)))
    for k, v in times.items():
        added = "" if k in ("copy", "plain") else "%.2fx" % ((med[k] - med["plain"]) / med["copy"])
        ph = [""] * len(PHASES) if k not in phases else \
            ["%.1f" % statistics.median(phases[k][p]) for p, _ in PHASES]
        print("| %s | %.0f ms (%.0f-%.0f) | %s | %s |" % (k, med[k], min(v) * 1000, max(v) * 1000, added,
                                                          " | ".join(ph)))


if __name__ == "__main__":
    main()
