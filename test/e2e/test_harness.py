"""The build harness: pinned tarball checks and the exported patch series."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

FETCH = ROOT / "scripts/fetch-upstream.sh"
CACHED = ROOT / "build/cache/criu_4.1.1.orig.tar.xz"


def fetch(cache, env=None, wrapper=()):
    e = dict(os.environ, CACHE=str(cache))
    e.pop("CRIU_TARBALL", None)
    e.update(env or {})
    return subprocess.run(list(wrapper) + [str(FETCH)], capture_output=True, text=True,
                          env=e, cwd=ROOT, stdin=subprocess.DEVNULL)


def one_line_error(r):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_corrupted_cache_is_refused(workdir):
    cache = workdir / "cache"
    cache.mkdir()
    data = bytearray(CACHED.read_bytes())
    data[1000] ^= 1
    (cache / CACHED.name).write_bytes(bytes(data))
    msg = one_line_error(fetch(cache))
    assert "sha256 mismatch" in msg and "corrupted cache" in msg


def test_wrong_criu_tarball_is_refused(workdir):
    wrong = workdir / CACHED.name
    wrong.write_bytes(b"not a tarball")
    msg = one_line_error(fetch(workdir / "cache", env={"CRIU_TARBALL": str(wrong)}))
    assert "CRIU_TARBALL=%s: sha256 mismatch" % wrong in msg
    assert not (workdir / "cache" / CACHED.name).exists()
    msg = one_line_error(fetch(workdir / "cache", env={"CRIU_TARBALL": str(workdir / "nope")}))
    assert "no such file" in msg


def test_offline_tarball_is_used(workdir):
    r = fetch(workdir / "cache", env={"CRIU_TARBALL": str(CACHED)},
              wrapper=["unshare", "--net"])
    assert r.returncode == 0, r.stderr
    assert (workdir / "cache" / CACHED.name).read_bytes() == CACHED.read_bytes()


def test_no_network_is_a_clear_error(workdir):
    msg = one_line_error(fetch(workdir / "cache", wrapper=["unshare", "--net"]))
    assert "cannot download criu_4.1.1.orig.tar.xz" in msg and "CRIU_TARBALL" in msg


def test_no_upstream_file_is_committed(workdir):
    """No tracked file is a copy of an upstream file (same path and content)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    assert "criu/tmp-files.c" in files
    subprocess.run(["tar", "-xJf", str(CACHED), "-C", str(workdir)], check=True)
    upstream = workdir / "criu-4.1.1"
    copies = [f for f in files
              if (upstream / f).is_file() and (upstream / f).read_bytes() == (ROOT / f).read_bytes()]
    assert copies == []


def test_upstream_patch_series_applies_and_builds(workdir):
    """make upstream-patch: git am on a pristine 4.1.1, then it builds."""
    dist = workdir / "dist"
    r = subprocess.run([str(ROOT / "scripts/export-series.sh"), str(dist)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    series = sorted(dist.iterdir())
    assert len(series) >= 2

    tree = workdir / "pristine"
    tree.mkdir()
    subprocess.run(["tar", "-xJf", str(CACHED), "-C", str(tree), "--strip-components=1"], check=True)
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A", "-f", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "pristine"], check=True)
    r = subprocess.run(git + ["am", "-q"] + [str(p) for p in series], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tree / "criu/tmp-files.c").exists()

    r = subprocess.run(["make", "-s", "-j%d" % os.cpu_count(), "criu"], cwd=tree,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = subprocess.run([str(tree / "criu/criu"), "--help"], capture_output=True, text=True).stdout
    assert "--tmp-file PATH" in out
