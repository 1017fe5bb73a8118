#!/usr/bin/python3
"""The report of a frozen-time benchmark run (bench/run.py): from its
raw.json, the table and targets of RESULTS.md, frozen-time.dat and the
plot frozen-time.png (gnuplot, bench/plot.gp).

bench/run.py measures, writes raw.json and then calls report(); this
rewrites the report of a stored run without measuring anything:

    /usr/bin/python3 bench/report.py bench/raw.json [--out DIR]

(the same as "bench/run.py --from-raw RAW_JSON"). DIR defaults to
bench/results.
"""
import argparse
import json
import math
import statistics
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MiB = 1 << 20
COMPRESSIONS = ("gzip", "zstd", "none")  # dump --tmp-file --tmp-file-compress=X
TMP_FILE_VARIANTS = COMPRESSIONS + ("precopy",)  # dumps with --tmp-file
PRECOPY_VARIANTS = ("without", "none", "precopy", "copy")  # of the "+ log" and "rewritten" cases
COPIES = ("copy", "tar-gzip")  # no dump: the wall time of a copy of the files


def log(msg):
    print("bench: " + msg, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mann_whitney_p(a, b):
    """Two-sided p-value of the Mann-Whitney U test (midranks for ties):
    exact, by enumerating every split of the pooled samples, when there
    are at most 200,000 splits (n=5+5: 252), else normal approximation."""
    from itertools import combinations
    pooled = sorted(a + b)
    rank = {}
    for v in set(pooled):
        idx = [i + 1 for i, x in enumerate(pooled) if x == v]
        rank[v] = sum(idx) / len(idx)
    ranks = [rank[x] for x in a + b]
    n1, n2 = len(a), len(b)
    mid = n1 * n2 / 2

    def dev(sel):
        return abs(sum(ranks[i] for i in sel) - n1 * (n1 + 1) / 2 - mid)
    obs = dev(range(n1))
    if math.comb(n1 + n2, n1) <= 200000:
        splits = list(combinations(range(n1 + n2), n1))
        return sum(1 for sel in splits if dev(sel) >= obs - 1e-9) / len(splits)
    # Large samples: normal approximation with the tie correction
    n = n1 + n2
    ties = sum(c ** 3 - c for c in (pooled.count(v) for v in set(pooled)))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    return math.erfc(max(obs - 0.5, 0) / sigma / math.sqrt(2)) if sigma else 1.0


def iqr(xs):
    if len(xs) < 2:
        return 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[2] - q[0]


def fmt(x, nd=1):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return "%.0f" % x
    return "%.*f" % (nd, x)


def summarize(res, case_names, variants):
    s = {}
    for c in case_names:
        s[c] = {}
        for v in variants:
            runs = res[c].get(v) or []
            if not runs:
                continue
            s[c][v] = {k: median([r.get(k) for r in runs]) for k in runs[0]}
            s[c][v]["n"] = len(runs)
            s[c][v]["frozen_all"] = [r["frozen_ms"] for r in runs]
            if "dump_ms" in runs[0]:
                s[c][v]["dump_all"] = [r["dump_ms"] for r in runs]
    for c in s:
        base = s[c].get("without", {}).get("frozen_ms")
        copy = s[c].get("copy", {}).get("frozen_ms")
        for v, m in s[c].items():
            if v in COPIES:
                m["added_ms"] = m["frozen_ms"]
            elif v in TMP_FILE_VARIANTS:
                m["added_ms"] = m["frozen_ms"] - base if base is not None else None
            else:
                m["added_ms"] = None
            m["ratio"] = m["added_ms"] / copy if m["added_ms"] is not None and copy else None
    return s


LABELS = {
    "unpatched": "unpatched %s, dump",  # % unpatched_version(machine)
    "without": "patched, dump without --tmp-file",
    "gzip": "--tmp-file, gzip",
    "zstd": "--tmp-file, zstd",
    "none": "--tmp-file, none",
    "precopy": "--tmp-file, none, --tmp-file-precopy",
    "copy": "plain copy (cp -a)",
    "tar-gzip": "original patch: tar --create --gzip",
}


def unpatched_version(m):
    """The upstream version the unpatched criu of a run was built from
    (recorded since the move to 4.2.1; older raw.json files lack it)."""
    return m.get("upstream_version", "upstream (version not recorded)")


def label(v, m):
    return LABELS[v] % unpatched_version(m) if v == "unpatched" else LABELS[v]


def targets(s, cases, variants, m):
    lines = []

    def res(ok):
        return "PASS" if ok else "FAIL"

    big = [c["name"] for c in cases if c["kind"] == "size" and c["mib"] in (128, 512)]
    # Evaluated at 128 and 512 MiB, where the targets are data-bound; the
    # other cases are listed as information, not judged.
    other = [c for c in s if c not in big and "gzip" in s[c]]
    for v, limit in (("none", 1.3), ("zstd", 2.0)):
        parts, ok = [], bool(big)
        for c in big:
            r = s[c][v]["ratio"]
            ok = ok and r is not None and r <= limit
            parts.append("%s %.2fx" % (c, r))
        info = ", ".join("%s %.2fx" % (c, s[c][v]["ratio"]) for c in other)
        lines.append("- %s: `%s` added frozen time ≤ %.1fx plain copy at 128 and 512 MiB: %s "
                     "(not judged: %s)" % (res(ok), v, limit, ", ".join(parts), info))

    # Restore: what criu restore -d takes more with the files to put back
    # than without (both medians), against the same plain copy.
    def restore_added(c, v):
        a = s[c][v]["restore_ms"] - s[c]["without"]["restore_ms"]
        return a, a / s[c]["copy"]["added_ms"]
    for v in ("none", "zstd"):
        parts, ok = [], bool(big)
        for c in big:
            a, r = restore_added(c, v)
            ok = ok and r <= 1.3
            parts.append("%s %.0f ms %.2fx" % (c, a, r))
        info = ", ".join("%s %.0f ms %.2fx" % ((c,) + restore_added(c, v)) for c in other)
        lines.append("- %s: `%s` added restore time (restore − restore without --tmp-file) ≤ 1.3x plain copy "
                     "at 128 and 512 MiB: %s (not judged: %s)" % (res(ok), v, ", ".join(parts), info))

    def img(c):
        z, g = s[c]["zstd"]["image_bytes"], s[c]["gzip"]["image_bytes"]
        return z <= g, "%s %.1f/%.1f KiB" % (c, z / 1024, g / 1024)
    ok = bool(big) and all(img(c)[0] for c in big)
    lines.append("- %s: `zstd` image ≤ `gzip` image at 128 and 512 MiB (zstd/gzip): %s "
                 "(not judged: %s)" % (res(ok), ", ".join(img(c)[1] for c in big),
                                       ", ".join(img(c)[1] for c in other)))
    c128 = [c["name"] for c in cases if c["kind"] == "size" and c["mib"] == 128]
    if c128:
        c = c128[0]
        original = s[c]["tar-gzip"]["added_ms"]
        for v in variants:
            if v not in TMP_FILE_VARIANTS:
                continue
            a = s[c][v]["added_ms"]
            f = original / a if a and a > 0 else float("inf")
            verdict = "not judged (gzip is exempt)" if v == "gzip" else res(f >= 8)
            lines.append("- %s: `%s` added frozen time ≥ 8x less than the original patch's tar --gzip "
                         "while frozen, at 128 MiB: %.1f ms vs %.1f ms (%.1fx less)" % (
                             verdict, v, a, original, f))
    for key, what in (("frozen_all", "frozen time"), ("dump_all", "dump wall time")):
        parts, ok = [], True
        for c in s:
            if "unpatched" not in s[c]:
                continue
            p, u = s[c]["without"][key], s[c]["unpatched"][key]
            d = statistics.median(p) - statistics.median(u)
            pv = mann_whitney_p(p, u)
            ok = ok and pv >= 0.05
            parts.append("%s %+.1f ms (%+.0f%%, p=%.2f)" % (c, d, 100 * d / statistics.median(u), pv))
        lines.append("- %s: without --tmp-file, %s within noise of unpatched %s "
                     "(Δ median; within noise = two-sided Mann-Whitney U test p ≥ 0.05): %s" % (
                         res(ok), what, unpatched_version(m), ", ".join(parts)))
    lines.extend(precopy_targets(s, cases))
    return lines


def precopy_targets(s, cases):
    """Issue 15's targets for --tmp-file-precopy."""
    lines = []

    def res(ok):
        return "PASS" if ok else "FAIL"

    def copy(c):
        return s[c]["copy"]["frozen_ms"]
    by = {(c["kind"], c.get("mode")): c["name"] for c in cases}
    log, rewritten, small = by.get(("load", "append")), by.get(("load", "rewrite")), by.get(("files", None))
    if log and "precopy" in s[log]:
        a = s[log]["precopy"]["added_ms"]
        lines.append("- %s: `precopy` added frozen time ≤ 5%% of a plain copy, %s: %.1f ms, %.1f%% of %.1f ms" % (
            res(a <= 0.05 * copy(log)), log, a, 100 * a / copy(log), copy(log)))
        d = s[log]["precopy"]["dump_ms"] - s[log]["without"]["dump_ms"]
        lines.append("- %s: `precopy` dump wall time added (dump wall with it − without --tmp-file) ≤ 2.2x a "
                     "plain copy, %s: %.0f ms, %.2fx of %.1f ms (the whole dump wall: %.0f ms, %.2fx)" % (
                         res(d <= 2.2 * copy(log)), log, d, d / copy(log), copy(log),
                         s[log]["precopy"]["dump_ms"], s[log]["precopy"]["dump_ms"] / copy(log)))
    if rewritten and "precopy" in s[rewritten]:
        p, n = s[rewritten]["precopy"]["added_ms"], s[rewritten]["none"]["added_ms"]
        lines.append("- %s: all data rewritten during the dump, `precopy` added frozen time ≤ 1.1x the "
                     "single pass's (`none`): %.1f ms vs %.1f ms (%.2fx)" % (res(p <= 1.1 * n), p, n, p / n))
    if small and "precopy" in s[small]:
        a = s[small]["precopy"]["added_ms"]
        lines.append("- %s: `precopy` added frozen time ≤ 10%% of a plain copy, %s: %.1f ms, %.1f%% of %.1f ms" % (
            res(a <= 0.1 * copy(small)), small, a, 100 * a / copy(small), copy(small)))
    return lines


def write_report(out, s, cases, variants, m, elapsed, cmdline, reps):
    case_desc = {c["name"]: c["desc"] for c in cases}
    L = []
    L.append("# criu dump --tmp-file: frozen-time benchmark")
    L.append("")
    L.append("Produced by `%s` in %.0f s on %s: %s, kernel %s, nproc %d (%s), %.1f GiB memory; "
             "load average %s at the start, %s at the end (other work on the machine adds noise)." % (
                 cmdline, elapsed, m["host"], m["os"], m["kernel"], m["nproc"], m["cpu"], m["mem_gib"],
                 m["load_start"], m["load_end"]))
    L.append("Patched criu built from this repository at %s; unpatched criu %s built from "
             "the sha256-verified upstream tarball (bench/pristine.sh)." % (m["commit"], unpatched_version(m)))
    L.append("Medians of %s repetitions per row (n below), variants interleaved in a shuffled order "
             "within each repetition. Files on a tmpfs mounted at %s, images on another tmpfs; "
             "the dumped process "
             "(bench/holder.c) holds up to %d of the files open and has its cwd in their directory." % (
                 reps, m.get("data_mnt", "/tmp"), m.get("max_open", 16)))
    L.append("")
    L.append("Frozen = `frozen_time` from CRIU's stats-dump image. Added = frozen(--tmp-file) − frozen(without "
             "--tmp-file), both medians; for the plain copy and the original patch's tar --gzip (which ran "
             "while the process was frozen) it is their wall time. IQR = interquartile range "
             "of the frozen time (copy, tar --gzip: of the wall time). Ratio = added / plain copy. "
             "Dump wall = wall time of `criu dump` until it exits, which includes any work done after "
             "the tree was resumed or killed. "
             "Image = the tmp-files archive (original patch: its tar.gz). Restore = wall time of `criu restore -d` "
             "(for --tmp-file, after the saved directory was moved away, so that the files come from "
             "the image; restore stages them under /tmp, %s). Every restored process is checked "
             "alive, then killed by pid and reaped; restored files are compared with the originals "
             "(names, modes, sizes, mtimes; content in the first repetition)." % ("the same tmpfs" if m.get("data_mnt", "/tmp") == "/tmp" else "another filesystem: a copy"))
    if "warm" in m:
        L.append("")
        L.append("Before each timed step (dump, restore, copy, tar --gzip) %d times the case's size %s "
                 "written into memory and freed, so that every step writes into memory just used "
                 "(bench/run.py's docstring, \"Memory\")." % (m.get("warm_factor", 2),
                                                              "was" if m["warm"] else "was not (--no-warm)"))
    L.append("")
    L.append("| case | variant | n | frozen ms | IQR ms | added ms | added / copy | dump wall ms | image MiB | restore ms |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in s:
        for v in variants:
            if v not in s[c]:
                continue
            r = s[c][v]
            frozen = r["frozen_ms"] if v not in COPIES else None
            ratio = "%.2fx" % r["ratio"] if r.get("ratio") is not None else "—"
            img = r.get("image_bytes")
            L.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                case_desc[c], label(v, m), r["n"], fmt(frozen), fmt(iqr(r["frozen_all"])),
                fmt(r.get("added_ms")), ratio,
                fmt(r.get("dump_ms")), "—" if img is None else "%.2f" % (img / MiB),
                fmt(r.get("restore_ms"))))
    L.append("")
    L.append("The targets, computed from the medians above:")
    L.append("")
    L.extend(targets(s, cases, variants, m))
    L.append("")
    L.append("![added frozen time](frozen-time.png)")
    L.append("")
    (out / "RESULTS.md").write_text("\n".join(L) + "\n")
    return "\n".join(L)


def plot(out, s, cases, variants):
    cols = [v for v in TMP_FILE_VARIANTS + COPIES if v in variants]
    if not any(c["kind"] == "size" for c in cases):
        return
    with open(out / "frozen-time.dat", "w") as f:
        f.write('"size (MiB)" ' + " ".join('"%s"' % LABELS[v] for v in cols) + "\n")
        for c in cases:
            if c["kind"] != "size":
                continue
            vals = []
            for v in cols:
                a = s[c["name"]].get(v, {}).get("added_ms")
                vals.append("%.3f" % a if a is not None and a > 0 else "NaN")
            f.write("%d %s\n" % (c["mib"], " ".join(vals)))
    subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'; ncols=%d" % (
        out / "frozen-time.dat", out / "frozen-time.png", len(cols)),
        str(BENCH / "plot.gp")], check=True)


# raw.json of runs before the variant was renamed call it "seed".
OLD_VARIANT_NAMES = {"seed": "tar-gzip"}


def report(out, raw):
    out.mkdir(parents=True, exist_ok=True)
    cases = raw["cases"]
    variants = [OLD_VARIANT_NAMES.get(v, v) for v in raw["variants"]]
    results = {c: {OLD_VARIANT_NAMES.get(v, v): runs for v, runs in by_variant.items()}
               for c, by_variant in raw["results"].items()}
    s = summarize(results, [c["name"] for c in cases], variants)
    plot(out, s, cases, variants)
    text = write_report(out, s, cases, variants, raw["machine"], raw["elapsed_s"],
                        raw.get("cmdline", "make bench"), raw.get("reps", 5))
    print(text)
    log("wrote %s and %s" % (out / "RESULTS.md", out / "frozen-time.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw", metavar="RAW_JSON", help="the raw.json of a run of bench/run.py")
    ap.add_argument("--out", default=str(BENCH / "results"), help="output directory (default bench/results)")
    args = ap.parse_args()
    report(Path(args.out), json.loads(Path(args.raw).read_text()))


if __name__ == "__main__":
    main()
