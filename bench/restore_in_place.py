#!/usr/bin/python3
"""Restore time with --tmp-file, wiped and not wiped, against a plain copy.

Issue 22's case: a tmpfs /tmp in a private mount namespace, a tree
(sleep) whose saved directory holds SIZE MiB of incompressible data and
2,000 files of 2 KiB, images on another tmpfs, --tmp-file-compress none
(or --compress's).
Measured in one run, median of RUNS:

  copy        cp -a of the saved directory (the baseline)
  plain       restore of a dump made without --tmp-file (files in place)
  in place    restore with --tmp-file, nothing wiped
  wiped       restore with --tmp-file, the directory removed first

"added" is a restore's time minus "plain", as a ratio of "copy".
  unpack      (--compress zstd or gzip) the decompressor alone, on the
              archive of the wiped case, to /dev/null

Usage: restore_in_place.py CRIU [SIZE_MIB] [RUNS] [--compress none|zstd|gzip]
[--timeline] [--perf FILE]
(as root; re-executes itself in a private mount namespace). Every criu
run is bounded.

--timeline: then one more wiped restore each of a `none` and a `zstd`
dump, with tar and zstd run through a wrapper first on PATH that notes
when each started and ended and its CPU time (/usr/bin/time): a timeline
of criu's own phases (its -v4 log: every "tmp-files:" line, with the time
since the line before it), the decompressor and tar, in ms since criu
started. --perf FILE: before it, one more wiped `none` restore runs
under "perf record -F 10000 -o FILE" (criu and its children), and a
`cp -a` of the same files under "perf record -o FILE.cp".
"""
import glob
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
        logs = [a for a in argv if a.endswith(".log")]
        d = argv[argv.index("-D") + 1] if "-D" in argv else None
        tail = open(os.path.join(d, logs[0])).read()[-1500:] if d and logs and os.path.exists(os.path.join(d, logs[0])) else ""
        sys.exit("%s failed (%d): %s%s%s" % (what, r.returncode, r.stdout, r.stderr, tail))
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


def dump(criu, images, app, with_option, compress="none"):
    shutil.rmtree(images, ignore_errors=True)
    os.makedirs(images)
    p = subprocess.Popen(["sleep", "1000"], cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    opts = ["--tmp-file", app, "--tmp-file-compress", compress] if with_option else []
    run([criu, "dump", "-t", str(p.pid), "-D", images, "-o", "dump.log", "--shell-job"] + opts, "dump")
    p.wait()
    wait_gone(p.pid)
    return p.pid


def restore(criu, images, pid):
    took = run([criu, "restore", "-d", "-D", images, "-o", "restore.log", "-v4", "--shell-job"], "restore")
    kill(pid)
    return took


WRAPPER = """#!/bin/sh
s=$(date +%%s.%%N)
/usr/bin/time -f "%%U %%S" -o "$TL_DIR/cpu.$$" %s "$@"
rc=$?
e=$(date +%%s.%%N)
echo "%s $s $e $(cat "$TL_DIR/cpu.$$")" >> "$TL_DIR/events"
exit $rc
"""


def timeline(criu, images, app, pid, what, perf=None):
    """One wiped restore with tar and zstd wrapped; prints its timeline"""
    tl = "/var/tmp/criu-bench-timeline"
    shutil.rmtree(tl, ignore_errors=True)
    os.makedirs(tl + "/bin")
    for prog in ("tar", "zstd"):
        with open("%s/bin/%s" % (tl, prog), "w") as f:
            f.write(WRAPPER % (shutil.which(prog), prog))
        os.chmod("%s/bin/%s" % (tl, prog), 0o755)
    env = dict(os.environ, PATH="%s/bin:%s" % (tl, os.environ["PATH"]), TL_DIR=tl)
    shutil.move(app, "/tmp/app.keep")
    argv = [criu, "restore", "-d", "-D", images, "-o", "restore.log", "-v4", "--shell-job"]
    if perf:  # a restore of its own: perf's start would shift the timeline
        subprocess.run(["perf", "record", "-q", "-F", "10000", "-o", perf, "--"] + argv, capture_output=True,
                       timeout=LIMIT, check=True)
        # and a plain copy of the same files, to compare with
        subprocess.run(["perf", "record", "-q", "-F", "10000", "-o", perf + ".cp", "--", "cp", "-a", "/tmp/app.keep",
                        "/tmp/app.cp"], capture_output=True, timeout=LIMIT, check=True)
        shutil.rmtree("/tmp/app.cp")
        kill(pid)
        shutil.rmtree(app)
        shutil.move("/tmp/app.keep", app)
        pid = dump(criu, images, app, True, what.split()[-1])
        shutil.move(app, "/tmp/app.keep")
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT, env=env)
    took = time.time() - t0
    if r.returncode:
        sys.exit("restore failed: %s%s" % (r.stdout, r.stderr))
    kill(pid)
    shutil.rmtree(app)
    shutil.move("/tmp/app.keep", app)
    rows = []
    with open(images + "/restore.log") as f:
        for ln in f:
            if ln.startswith("(") and ("tmp-files:" in ln or "Restore finished" in ln):
                rows.append((float(ln[1:10]) * 1000, "criu", ln[11:].strip()[:110]))
    # criu's log times count from its start: t0 (the perf run: its start adds a little)
    with open(tl + "/events") as f:
        for ln in f:
            prog, s, e, user, sys_ = ln.split()
            rows.append(((float(s) - t0) * 1000, prog, "%s starts" % prog))
            rows.append(((float(e) - t0) * 1000, prog, "%s ends: %.0f ms wall, %.0f ms user + %.0f ms system CPU" % (
                prog, (float(e) - float(s)) * 1000, float(user) * 1000, float(sys_) * 1000)))
    rows.sort()
    print("\nTimeline of a wiped restore, %s (criu restore wall %.0f ms; ms since criu started):" % (what, took * 1000))
    print("| ms | + ms | who | what |")
    print("|---:|---:|---|---|")
    last = 0.0
    for t, who, text in rows:
        print("| %.1f | %.1f | %s | %s |" % (t, t - last, who, text.replace("|", "/")))
        last = t


def make_tree(size, images):
    """In a private mount namespace (the script is run again in one): a
    tmpfs on /tmp holding /tmp/app (size MiB of random data in big, 2,000
    files of 2 KiB in small), and one on images. Returns /tmp/app."""
    if os.environ.get("BENCH_IN_NS") != "1":
        os.environ["BENCH_IN_NS"] = "1"
        os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable] + sys.argv)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % (size * 3 + 256), "bench-tmp", "/tmp"], check=True)
    os.makedirs(images, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % (2 * size + 128), "bench-img", images], check=True)
    app = "/tmp/app"
    os.makedirs(app + "/small")
    with open(app + "/big", "wb") as f:
        for _ in range(size):
            f.write(os.urandom(1 << 20))
    for i in range(2000):
        with open("%s/small/f%04d" % (app, i), "wb") as f:
            f.write(os.urandom(2048))
    return app


def main():
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    perf = compress = None
    if "--perf" in sys.argv:
        perf = sys.argv[sys.argv.index("--perf") + 1]
    if "--compress" in sys.argv:
        compress = sys.argv[sys.argv.index("--compress") + 1]
    pos = [a for a in sys.argv[1:] if not a.startswith("--") and a not in (perf, compress)]
    compress = compress or "none"
    unpack = {"zstd": ["zstd", "-d", "-c", "-q"], "gzip": ["gzip", "-d", "-c"]}.get(compress)
    criu = os.path.abspath(pos[0])
    size = int(pos[1]) if len(pos) > 1 else 256
    runs = int(pos[2]) if len(pos) > 2 else 3
    images = "/var/tmp/criu-bench-in-place"
    app = make_tree(size, images)
    times = {"copy": [], "plain": [], "in place": [], "wiped": [], "unpack": []}
    for _ in range(runs):
        shutil.rmtree("/tmp/copy", ignore_errors=True)
        times["copy"].append(run(["cp", "-a", app, "/tmp/copy"], "cp -a"))
        shutil.rmtree("/tmp/copy")
        pid = dump(criu, images + "/d", app, False)
        times["plain"].append(restore(criu, images + "/d", pid))
        pid = dump(criu, images + "/d", app, True, compress)
        if unpack:
            arch = glob.glob(images + "/d/tmp-files.tar*.img")[0]
            with open(arch, "rb") as src, open(os.devnull, "wb") as null:
                t = time.monotonic()
                subprocess.run(unpack, stdin=src, stdout=null, check=True, timeout=LIMIT)
                times["unpack"].append(time.monotonic() - t)
        times["in place"].append(restore(criu, images + "/d", pid))
        with open(images + "/d/restore.log") as f:
            skipped = "the archive is not read" in f.read()
        shutil.move(app, "/tmp/app.keep")
        times["wiped"].append(restore(criu, images + "/d", pid))
        with open(images + "/d/restore.log") as f:
            lines = [ln for ln in f if "tmp-files:" in ln or "Restore finished" in ln]
        shutil.rmtree(app)
        shutil.move("/tmp/app.keep", app)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print("restore_in_place.py %s: %d MiB + 2,000 files of 2 KiB, %s, median of %d (range)%s" %
          (" ".join(sys.argv[1:]), size, compress, runs, "" if skipped else " (this criu extracts when nothing was wiped)"))
    print("| case | time | added, against the copy |")
    print("|---|---:|---:|")
    for k in ("copy", "plain", "unpack", "in place", "wiped"):
        if k not in med:
            continue
        added = "" if k in ("copy", "plain", "unpack") else "%.2fx" % ((med[k] - med["plain"]) / med["copy"])
        if unpack and k == "wiped":
            added += " (%.2fx after the unpack)" % ((med[k] - med["plain"] - med["unpack"]) / med["copy"])
        print("| %s | %.0f ms (%.0f-%.0f) | %s |" % (k, med[k] * 1000, min(times[k]) * 1000, max(times[k]) * 1000, added))
    if "--timeline" not in flags:
        # Where a wiped restore's time goes: criu's own log, the last run
        print("\nTimeline of the last wiped restore (criu's log, -v4):")
        for ln in lines:
            print("    " + ln.rstrip()[:150])
        return
    print("\nA plain copy (cp -a) of the same directory, median of %d: %.0f ms" % (runs, med["copy"] * 1000))
    for compress in ("none", "zstd"):
        pid = dump(criu, images + "/d", app, True, compress)
        timeline(criu, images + "/d", app, pid, "--tmp-file-compress " + compress,
                 perf if compress == "none" else None)


if __name__ == "__main__":
    main()
