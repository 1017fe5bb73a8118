#!/usr/bin/python3
"""Benchmark of the frozen-time cost of criu dump --tmp-file, against its targets.

A small long-running process (bench/holder.c) holds its files open on a
tmpfs that the benchmark mounts; total sizes 1, 16, 128, 512 MiB (half
random bytes, half text-like data) and a case of 10,000 small files. For
every case, side by side in one run, each repetition in a shuffled order:

  unpatched   unpatched criu of the pinned release (VERSION in
              scripts/upstream.conf; build/bench-pristine), plain dump
  without     patched criu, dump without --tmp-file
  gzip/zstd/none  patched criu, dump --tmp-file DIR [--tmp-file-compress=X]
  precopy     patched criu, dump --tmp-file DIR --tmp-file-compress=none
              --tmp-file-precopy (issue 15)
  copy        cp -a of the same directory into the images filesystem
  tar-gzip    tar --create --gzip --absolute-names of the same directory
              into the images filesystem: the original patch's approach,
              a tar --gzip while the process is frozen (its wall time is
              the frozen time it would add)

Frozen time is CRIU's own frozen_time from the stats-dump image. Each dumped
process is restored with "criu restore -d" (the --tmp-file variants after
the directory is moved away, so that the files come from the image), its
files are checked, and it is killed by pid and reaped: the benchmark is a
child subreaper.

The benchmark runs in a private mount namespace (re-executed under
"unshare --mount --propagation private"): a tmpfs on /tmp holds the
files (so restore stages the archive on the same filesystem, as on a host
whose /tmp is a tmpfs) and a second tmpfs holds the images. Both are
unmounted at the end; nothing is visible outside the namespace.

Memory: before each timed step (a dump, a restore, the copy, tar-gzip)
the benchmark writes twice the case's size into anonymous memory and
frees it, so that every step writes its new tmpfs pages into memory the
guest has just used. On this VM (Firecracker, nested, free
page reporting) the first write into a page the guest has not used
recently costs several times more than into one just freed, and which
kind a step gets depends on what the steps before it freed: the copy
came right after the previous variant's images and files were deleted,
while a restore came right after its dump had used that memory for the
archive, so its stage often got the idle kind. bench/restore_phases.py
measures it: criu writing the 512 MiB stage took 1504 ms in idle memory
against 409 ms after this warm-up (74% against 14 to 18% of criu's
samples in copy_folio_from_iter_atomic), and that made the restore
target fail at 3.3x to 3.9x a copy (README, "Performance"): the
comparison was of memory states, not of work. The warm-up lessens it,
it does not rule it out: after an 8 GiB ballast the warmed restores
took 596 to 862 ms, against 893 to 2274 ms not warmed and a 320 ms
copy. --no-warm measures as before.

Two more cases of 512 MiB measure the pre-copy: "+ log" where the holder
appends to a log at 1 MB/s during the dump, and "rewritten" where it
rewrites all its files in place as fast as it can (the worst case: every
byte the pre-copy read has changed by the freeze). They run the variants
without, none, precopy and copy.

Writes bench/results/RESULTS.md, raw.json, frozen-time.dat and
frozen-time.png. Run as root with /usr/bin/python3 (needs protobuf), e.g.
"make bench" or "make bench BENCH_ARGS='--reps 7'".
This file measures and writes raw.json; bench/report.py makes the report
from it (and "bench/report.py bench/raw.json", or "--from-raw
bench/raw.json" here, rewrites the table and plot of a stored run).
BENCH_CRIU=/path/to/criu measures another patched binary.
"""
import argparse
import ctypes
import filecmp
import json
import mmap
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.append(str(ROOT / "scripts"))
from upstream_conf import UPSTREAM  # noqa: E402  the pinned release: VERSION, TARBALL
TREE = ROOT / ("build/criu-" + UPSTREAM.VERSION)
CRIU = Path(os.environ.get("BENCH_CRIU", TREE / "criu/criu"))  # the patched criu
WORK = ROOT / "build/bench"
PR_SET_CHILD_SUBREAPER = 36
MAX_OPEN = 16  # files the holder keeps open
WARM_FACTOR = 2  # times a case's size written and freed before each timed step
WARM_MARGIN = 64 << 20  # and at least this much more than the size
# Written from here: in one A/B under a heavy 8 GiB ballast, better than MAP_POPULATE's zeroing
WARM_CHUNK = os.urandom(1 << 20)

# What the variants are, and the report of a run (its raw.json)
from report import COMPRESSIONS, COPIES, PRECOPY_VARIANTS, TMP_FILE_VARIANTS, MiB, log, report  # noqa: E402

sys.path.insert(0, str(TREE / "lib"))


# ---------------------------------------------------------------- processes

PIDS = set()  # every process started or restored; killed by pid at exit


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
            raise RuntimeError("pid %d still exists after %ds" % (pid, timeout))
        time.sleep(0.005)
    PIDS.discard(pid)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def kill_all():
    for pid in list(PIDS):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in list(PIDS):
        try:
            wait_gone(pid)
        except RuntimeError as e:
            log(str(e))
    reap()


# ---------------------------------------------------------------- mounts

MOUNTS = []


def mount_tmpfs(path, size):
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=1777" % size,
                    "criu-bench", str(path)], check=True)
    MOUNTS.append((path, created))


def umount_all():
    while MOUNTS:
        path, created = MOUNTS.pop()
        if subprocess.run(["umount", str(path)]).returncode:
            subprocess.run(["umount", "-l", str(path)])
        if created:
            try:
                path.rmdir()
            except OSError as e:
                log("can't remove the mount point %s: %s" % (path, e))


# ---------------------------------------------------------------- data

WORDS = ("request handled worker session cache miss hit upstream timeout "
         "retry connection accepted closed user token refresh queue job "
         "started finished failed ok error warn info debug GET POST PUT "
         "DELETE api v1 v2 items orders users metrics health status bytes "
         "duration latency shard replica leader follower commit index").split()


def text_pool(rng, n=65536):
    pool = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        pool.append(("2025-11-%02dT%02d:%02d:%02d.%06d %s [%s-%d] %s id=%08x status=%d dur=%dms\n" % (
            rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
            rng.randint(0, 999999), rng.choice(("INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR")),
            rng.choice(WORDS), rng.randint(0, 64), words, rng.getrandbits(32),
            rng.choice((200, 200, 200, 201, 204, 304, 404, 500)), rng.randint(0, 5000))).encode())
    return pool


def text_bytes(rng, pool, size):
    out = bytearray()
    while len(out) < size:
        out += b"".join(rng.choices(pool, k=max(1, (size - len(out)) // 60 + 16)))
    return bytes(out[:size])


def make_case(rng, pool, case, directory):
    directory.mkdir()
    if case["kind"] in ("size", "load"):
        half = case["bytes"] // 2
        (directory / "random.bin").write_bytes(os.urandom(half))
        (directory / "text.log").write_bytes(text_bytes(rng, pool, case["bytes"] - half))
    else:
        per = case["file_size"]
        for i in range(case["files"]):
            if i % 2:
                data = text_bytes(rng, pool, per)
                name = "f%05d.log" % i
            else:
                data = os.urandom(per)
                name = "f%05d.bin" % i
            (directory / name).write_bytes(data)


def tree_listing(directory):
    out = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(directory))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def same_content(a, b):
    for dirpath, _, filenames in os.walk(a):
        for name in filenames:
            p = Path(dirpath) / name
            if not filecmp.cmp(p, Path(b) / p.relative_to(a), shallow=False):
                return False
    return True


# ---------------------------------------------------------------- criu


def frozen_time_us(images):
    import pycriu
    # CRIU names it "stats-dump" (image-desc.c: "stats-%s"), no .img
    path = images / "stats-dump"
    if not path.exists():
        path = images / "stats-dump.img"
    with open(path, "rb") as f:
        img = pycriu.images.load(f)
    d = img["entries"][0]["dump"]
    return int(d["frozen_time"]), int(d["freezing_time"])


def start_holder(holder, directory, ready, mode=None):
    if ready.exists():
        ready.unlink()
    p = subprocess.Popen([str(holder), str(directory), str(MAX_OPEN), str(ready)] + ([mode] if mode else []),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    PIDS.add(p.pid)
    deadline = time.time() + 20
    while not ready.exists():
        if p.poll() is not None:
            raise RuntimeError("holder exited with %s" % p.returncode)
        if time.time() > deadline:
            raise RuntimeError("holder did not become ready")
        time.sleep(0.002)
    return p


def run_timed(cmd, timeout=600):
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout)
    dt = time.monotonic() - t0
    return proc, dt


def log_tail(path, n=25):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-n:])


class Runner:
    def __init__(self, args, criu, pristine, holder, data, imgfs):
        self.args = args
        self.criu = criu
        self.pristine = pristine
        self.holder = holder
        self.data = data
        self.imgfs = imgfs
        self.seq = 0

    def warm(self, nbytes):
        """Write WARM_FACTOR x nbytes (at least WARM_MARGIN more) into
        anonymous memory and free it: the timed step that follows (a
        dump, a restore, a copy) then gets memory the guest has just
        used, whatever ran before it (see "Memory" in the docstring).
        No-op with --no-warm."""
        if self.args.no_warm:
            return
        size = -(-max(WARM_FACTOR * nbytes, nbytes + WARM_MARGIN) // MiB) * MiB
        m = mmap.mmap(-1, size)
        for _ in range(size // MiB):
            m.write(WARM_CHUNK)
        m.close()

    def fresh(self, name):
        self.seq += 1
        d = self.imgfs / ("%s.%d" % (name, self.seq))
        d.mkdir()
        return d

    def dump_variant(self, case, variant, check_content):
        """One dump + restore; returns a dict of measurements."""
        directory = self.data / case["name"]
        ready = WORK / "ready"
        criu = self.pristine if variant == "unpatched" else self.criu
        extra = []
        if variant in COMPRESSIONS:
            extra = ["--tmp-file", str(directory), "--tmp-file-compress=%s" % variant]
        elif variant == "precopy":
            extra = ["--tmp-file", str(directory), "--tmp-file-compress=none", "--tmp-file-precopy"]
        images = self.fresh(variant)
        self.warm(case["bytes"])
        holder = start_holder(self.holder, directory, ready, case.get("mode"))
        pid = holder.pid
        cmd = [str(criu), "dump", "-t", str(pid), "-D", str(images), "-o", "dump.log"] + extra
        proc, dump_wall = run_timed(cmd)
        if proc.returncode:
            raise RuntimeError("%s: %s exited %d\n%s\n%s" % (
                case["name"], " ".join(cmd), proc.returncode, proc.stdout.decode(errors="replace"),
                log_tail(images / "dump.log")))
        holder.wait(timeout=20)
        wait_gone(pid)
        frozen, freezing = frozen_time_us(images)
        image_bytes = sum(p.stat().st_size for p in images.iterdir()
                          if p.name.startswith("tmp-files") and "manifest" not in p.name)
        total_bytes = sum(p.stat().st_size for p in images.iterdir())

        aside = None
        before = tree_listing(directory)
        if extra:
            aside = self.data / (".aside-" + case["name"])
            directory.rename(aside)
        cmd = [str(criu), "restore", "-d", "-D", str(images), "-o", "restore.log"]
        if self.args.keep_logs:
            cmd.append("-v4")
        if case.get("mode"):
            cmd.append("--leave-stopped")  # it would write before the files are compared
        self.warm(case["bytes"])
        proc, restore_wall = run_timed(cmd)
        if proc.returncode:
            if aside and not directory.exists():
                aside.rename(directory)
            raise RuntimeError("%s: %s exited %d\n%s\n%s" % (
                case["name"], " ".join(cmd), proc.returncode, proc.stdout.decode(errors="replace"),
                log_tail(images / "restore.log")))
        if self.args.keep_logs:
            shutil.copy(images / "restore.log", Path(self.args.keep_logs) / ("%s.%s.%d.log" % (
                case["name"], variant, self.seq)))
        PIDS.add(pid)
        if not alive(pid):
            raise RuntimeError("%s/%s: restored pid %d is not running" % (case["name"], variant, pid))
        nfd = len(os.listdir("/proc/%d/fd" % pid))
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        if aside:
            after = tree_listing(directory)
            if after != before:
                raise RuntimeError("%s/%s: restored files differ from the dumped ones" % (
                    case["name"], variant))
            if check_content and not same_content(aside, directory):
                raise RuntimeError("%s/%s: restored content differs" % (case["name"], variant))
            shutil.rmtree(directory)
            aside.rename(directory)
        shutil.rmtree(images)
        return {"frozen_ms": frozen / 1000, "freezing_ms": freezing / 1000,
                "dump_ms": dump_wall * 1000, "restore_ms": restore_wall * 1000,
                "image_bytes": image_bytes if extra else None, "images_total_bytes": total_bytes,
                "restored_fds": nfd}

    def copy_variant(self, case, variant):
        directory = self.data / case["name"]
        out = self.fresh(variant)
        if variant == "copy":
            cmd = ["cp", "-a", str(directory), str(out / "copy")]
        else:
            cmd = ["tar", "--create", "--gzip", "--absolute-names",
                   "--file", str(out / "tar-gzip.tar.gz"), str(directory)]
        self.warm(case["bytes"])
        proc, dt = run_timed(cmd)
        if proc.returncode:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd), proc.stdout.decode(errors="replace")))
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        shutil.rmtree(out)
        return {"frozen_ms": dt * 1000, "image_bytes": size}


# ---------------------------------------------------------------- machine


def loadavg():
    with open("/proc/loadavg") as f:
        return "/".join(f.read().split()[:3])


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        debian = "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = platform.system()
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "os": debian,
            "mem_gib": round(mem / (1 << 30), 1), "cpu": cpu}


# ---------------------------------------------------------------- main


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per case and variant (default 5)")
    ap.add_argument("--sizes", default="1,16,128,512", help="total sizes in MiB (default 1,16,128,512)")
    ap.add_argument("--small-files", type=int, default=10000, help="files in the small-files case (0: skip)")
    ap.add_argument("--small-size", type=int, default=4096, help="bytes per small file (default 4096)")
    ap.add_argument("--load-mib", type=int, default=512,
                    help="size of the '+ log' and 'rewritten' cases in MiB (default 512; 0: skip)")
    ap.add_argument("--variants", help="measure only these variants (comma-separated, e.g. without,none,copy): "
                    "prints their medians and writes raw.json, no report")
    ap.add_argument("--no-warm", action="store_true",
                    help="do not write and free twice the case's size before each timed step (as the runs before "
                    "4 Dec 18:30 UTC: see 'Memory' in the docstring)")
    ap.add_argument("--keep-logs", metavar="DIR",
                    help="restore with -v4 and keep every restore.log in DIR (CASE.VARIANT.N.log)")
    ap.add_argument("--out", default=str(BENCH / "results"), help="output directory")
    ap.add_argument("--from-raw", metavar="RAW_JSON",
                    help="measure nothing: rewrite the table and plot from a raw.json of an earlier run")
    ap.add_argument("--in-ns", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def enter_private_namespace(args):
    """As root, re-execute in a private mount namespace (our tmpfs mounts
    are invisible outside and cannot be hidden by mounts made concurrently
    elsewhere); there, become a child subreaper and exit cleanly on
    SIGTERM and SIGHUP."""
    if os.geteuid() != 0:
        sys.exit("bench: must run as root")
    if not args.in_ns:
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private",
                              "/usr/bin/python3", str(Path(__file__).resolve()), "--in-ns"] + sys.argv[1:])
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit("bench: terminated"))
    signal.signal(signal.SIGHUP, lambda *a: sys.exit("bench: hangup"))


def prepare_programs():
    """The unpatched criu (bench/pristine.sh builds it), the holder, and a
    copy of the patched criu; returns their paths."""
    WORK.mkdir(parents=True, exist_ok=True)
    pristine = subprocess.run([str(BENCH / "pristine.sh")], check=True, stdout=subprocess.PIPE,
                              text=True).stdout.strip().splitlines()[-1]
    pristine = ROOT / pristine
    holder = WORK / "holder"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(holder), str(BENCH / "holder.c")], check=True)
    if not CRIU.exists():
        sys.exit("bench: %s is missing, run make build" % CRIU)
    # Snapshot the patched binary and load pycriu now: the build tree may
    # be rebuilt by someone else while the benchmark runs.
    criu = WORK / "criu-patched"
    shutil.copy2(CRIU, criu)
    import pycriu  # noqa: F401
    return pristine, holder, criu


def make_cases(args):
    cases = []
    for mib in [int(x) for x in args.sizes.split(",") if x]:
        cases.append({"name": "%dMiB" % mib, "kind": "size", "mib": mib, "bytes": mib * MiB,
                      "desc": "%d MiB" % mib})
    if args.small_files:
        cases.append({"name": "small", "kind": "files", "files": args.small_files,
                      "file_size": args.small_size, "bytes": args.small_files * args.small_size,
                      "desc": "%d files × %d KiB" % (args.small_files, args.small_size // 1024)})
    if args.load_mib:
        mib = args.load_mib
        cases.append({"name": "%dMiB+log" % mib, "kind": "load", "mib": mib, "bytes": mib * MiB,
                      "mode": "append", "variants": PRECOPY_VARIANTS,
                      "desc": "%d MiB + a log appended at 1 MB/s" % mib})
        cases.append({"name": "%dMiB-rewritten" % mib, "kind": "load", "mib": mib, "bytes": mib * MiB,
                      "mode": "rewrite", "variants": PRECOPY_VARIANTS,
                      "desc": "%d MiB rewritten during the dump" % mib})
    return cases


def describe_run(args, load_start):
    """The machine and the versions measured, for the report."""
    m = machine()
    m["load_start"] = load_start
    m["upstream_version"] = UPSTREAM.VERSION
    m["commit"] = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip() or "?"
    m["host"] = "this machine (%s)" % platform.node()
    m["max_open"] = MAX_OPEN
    m["warm"] = not args.no_warm
    m["warm_factor"] = WARM_FACTOR
    return m


def data_mountpoint():
    """The files live on a tmpfs on /tmp (in our mount namespace only), as
    on a host whose /tmp is a tmpfs; restore then stages on the same fs. A
    checkout under /tmp would be hidden by it: use /var/tmp instead."""
    data_mnt = Path("/tmp")
    if ROOT == data_mnt or data_mnt in ROOT.parents:
        data_mnt = Path("/var/tmp/criu-bench-data")
    return data_mnt


def measure(args, cases, variants, programs, data_mnt):
    """Mount the two tmpfs, generate the data, run every case and variant
    args.reps times (variants in a shuffled order in each repetition);
    returns {case name: {variant: [measurements]}}. Everything started is
    killed and everything mounted unmounted, also on failure."""
    pristine, holder, criu = programs
    total = sum(c["bytes"] for c in cases)
    biggest = max(c["bytes"] for c in cases)
    res = {c["name"]: {v: [] for v in c.get("variants", variants) if v in variants} for c in cases}
    img_mnt = WORK / "images"
    try:
        mount_tmpfs(data_mnt, total + biggest + 256 * MiB)
        # Sized for the largest images dir (uncompressed archive + pages)
        mount_tmpfs(img_mnt, 2 * biggest + 512 * MiB)
        data = data_mnt / "criu-bench"
        data.mkdir()
        rng = random.Random(7)
        pool = text_pool(rng)
        t0 = time.monotonic()
        for c in cases:
            make_case(rng, pool, c, data / c["name"])
        log("generated %.0f MiB of data in %.1f s" % (total / MiB, time.monotonic() - t0))

        runner = Runner(args, criu, pristine, holder, data, img_mnt)
        for c in cases:
            t0 = time.monotonic()
            for rep in range(args.reps):
                order = [v for v in c.get("variants", variants) if v in variants]
                random.Random(1000 * rep + len(c["name"])).shuffle(order)
                for v in order:
                    if v in COPIES:
                        r = runner.copy_variant(c, v)
                    else:
                        r = runner.dump_variant(c, v, check_content=(rep == 0))
                    res[c["name"]][v].append(r)
            log("%-8s %d reps in %.1f s" % (c["name"], args.reps, time.monotonic() - t0))
    finally:
        kill_all()
        umount_all()
    return res


def print_medians(raw):
    """A subset of the variants (--variants): their medians, no report."""
    def med(xs):
        xs = sorted(x for x in xs if x is not None)
        return xs[len(xs) // 2] if xs else float("nan")
    print("load %s to %s; medians of %d (all values)" % (raw["machine"]["load_start"], raw["machine"]["load_end"],
                                                       raw["reps"]))
    for c, byv in raw["results"].items():
        for v, rs in byv.items():
            for k in ("frozen_ms", "restore_ms"):
                vals = [r.get(k) for r in rs if r.get(k) is not None]
                if vals:
                    print("%-10s %-9s %-10s %7.1f  %s" % (c, v, k, med(vals), " ".join("%.0f" % x for x in vals)))


def main():
    args = parse_args()
    if args.from_raw:
        raw = json.loads(Path(args.from_raw).read_text())
        report(Path(args.out), raw)
        return

    enter_private_namespace(args)
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    load_start = loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    programs = prepare_programs()
    variants = ["unpatched", "without"] + list(TMP_FILE_VARIANTS) + list(COPIES)
    if args.variants:
        chosen = args.variants.split(",")
        unknown = [v for v in chosen if v not in variants]
        if unknown:
            sys.exit("bench: unknown variants %s (known: %s)" % (",".join(unknown), ",".join(variants)))
        variants = [v for v in variants if v in chosen]
    log("criu %s; variants: %s" % (CRIU, " ".join(variants)))
    cases = make_cases(args)
    m = describe_run(args, load_start)
    data_mnt = data_mountpoint()
    m["data_mnt"] = str(data_mnt)

    res = measure(args, cases, variants, programs, data_mnt)

    elapsed = time.monotonic() - t_start
    m["load_end"] = loadavg()
    cmdline = os.environ.get("BENCH_CMD") or " ".join(["bench/run.py"] + sys.argv[2:])
    raw = {"machine": m, "variants": variants, "cases": cases, "results": res,
           "elapsed_s": elapsed, "cmdline": cmdline, "reps": args.reps}
    with open(out / "raw.json", "w") as f:
        json.dump(raw, f, indent=1)
    if args.variants:
        print_medians(raw)
        return
    report(out, raw)


if __name__ == "__main__":
    main()
