#!/usr/bin/python3
"""Restore time with --tmp-file, wiped and not wiped, against a plain copy.

Issue 22's case: a tmpfs /tmp in a private mount namespace, a tree
(sleep) whose saved directory holds SIZE MiB of incompressible data and
2,000 files of 2 KiB, images on another tmpfs, --tmp-file-compress none.
Measured in one run, median of RUNS:

  copy        cp -a of the saved directory (the baseline)
  plain       restore of a dump made without --tmp-file (files in place)
  in place    restore with --tmp-file, nothing wiped
  wiped       restore with --tmp-file, the directory removed first

"added" is a restore's time minus "plain", as a ratio of "copy".
Usage: restore_in_place.py CRIU [SIZE_MIB] [RUNS]   (as root; re-executes
itself in a private mount namespace). Every criu run is bounded.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

LIMIT = 120


def run(argv, what):
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT)
    took = time.monotonic() - t
    if r.returncode:
        sys.exit("%s failed (%d): %s%s" % (what, r.returncode, r.stdout, r.stderr))
    return took


def wait_gone(pid):
    for _ in range(2000):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not os.path.exists("/proc/%d" % pid):
            return
        time.sleep(0.005)
    sys.exit("pid %d did not go away" % pid)


def kill(pid):
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    wait_gone(pid)


def dump(criu, images, app, with_option):
    shutil.rmtree(images, ignore_errors=True)
    os.makedirs(images)
    p = subprocess.Popen(["sleep", "1000"], cwd="/", stdin=subprocess.DEVNULL)
    opts = ["--tmp-file", app, "--tmp-file-compress", "none"] if with_option else []
    run([criu, "dump", "-t", str(p.pid), "-D", images, "-o", "dump.log", "--shell-job"] + opts, "dump")
    p.wait()
    wait_gone(p.pid)
    return p.pid


def restore(criu, images, pid):
    took = run([criu, "restore", "-d", "-D", images, "-o", "restore.log", "-v4", "--shell-job"], "restore")
    kill(pid)
    return took


def main():
    criu = os.path.abspath(sys.argv[1])
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if os.environ.get("BENCH_IN_NS") != "1":
        os.environ["BENCH_IN_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable] + sys.argv)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % (size * 3 + 256), "bench-tmp", "/tmp"], check=True)
    images = "/var/tmp/criu-bench-in-place"
    os.makedirs(images, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % (size + 128), "bench-img", images], check=True)
    app = "/tmp/app"
    os.makedirs(app + "/small")
    with open(app + "/big", "wb") as f:
        for _ in range(size):
            f.write(os.urandom(1 << 20))
    for i in range(2000):
        with open("%s/small/f%04d" % (app, i), "wb") as f:
            f.write(os.urandom(2048))
    times = {"copy": [], "plain": [], "in place": [], "wiped": []}
    for _ in range(runs):
        shutil.rmtree("/tmp/copy", ignore_errors=True)
        times["copy"].append(run(["cp", "-a", app, "/tmp/copy"], "cp -a"))
        shutil.rmtree("/tmp/copy")
        pid = dump(criu, images + "/d", app, False)
        times["plain"].append(restore(criu, images + "/d", pid))
        pid = dump(criu, images + "/d", app, True)
        times["in place"].append(restore(criu, images + "/d", pid))
        with open(images + "/d/restore.log") as f:
            skipped = "the archive is not read" in f.read()
        shutil.move(app, "/tmp/app.keep")
        times["wiped"].append(restore(criu, images + "/d", pid))
        with open(images + "/d/restore.log") as f:
            timeline = [ln for ln in f if "tmp-files:" in ln or "Restore finished" in ln]
        shutil.rmtree(app)
        shutil.move("/tmp/app.keep", app)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("restore_in_place.py %s %d %d: %d MiB + 2,000 files of 2 KiB, median of %d%s" %
          (sys.argv[1], size, runs, size, runs, "" if skipped else " (this criu extracts when nothing was wiped)"))
    print("| case | time | added, against the copy |")
    print("|---|---:|---:|")
    for k in ("copy", "plain", "in place", "wiped"):
        added = "" if k in ("copy", "plain") else "%.2fx" % ((med[k] - med["plain"]) / med["copy"])
        print("| %s | %.0f ms | %s |" % (k, med[k] * 1000, added))
    # Where a wiped restore's time goes: criu's own log, the last run
    print("\nTimeline of the last wiped restore (criu's log, -v4):")
    for ln in timeline:
        print("    " + ln.rstrip()[:150])


if __name__ == "__main__":
    main()
