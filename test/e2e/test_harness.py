"""The build harness: pinned tarball checks, the exported patch series,
and the time limits of the tests and the demo."""
import os
import re
import subprocess
import time

import pytest

import criutree
from conftest import BUILD_TREE, ROOT, UPSTREAM, Criu, alive, run_bounded, wait_gone
from criutree import pycriu, pycriu_call, request, swrk_call

FETCH = ROOT / "scripts/fetch-upstream.sh"
CACHED = ROOT / "build/cache" / UPSTREAM.TARBALL



# The series make upstream-patch writes besides tmp-file: fixes that can go
# upstream alone (scripts/export-series.sh, SEPARATE), by subject
SEPARATE_SERIES = {
    "socket-buffer": ["lib/c: make room for a big request in the socket buffer"],
    "unseized": ["seize: do not resume a task that was never seized"],
    "libcriu-errmsg": ["lib/c: criu_get_last_errmsg() returns what criu said of a failed request"],
    # patches/standalone/: not in patches/series (the build does not need it)
    "scripts-tmp-files.sh-pass-tar-options-as-words": ["scripts/tmp-files.sh: pass tar options as words"],
}

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
    assert "cannot download %s" % UPSTREAM.TARBALL in msg and "CRIU_TARBALL" in msg


def test_no_upstream_file_is_committed(workdir):
    """No tracked file is a copy of an upstream file (same path and content)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    assert "criu/tmp-files.c" in files
    subprocess.run(["tar", "-xJf", str(CACHED), "-C", str(workdir)], check=True)
    upstream = workdir / ("criu-" + UPSTREAM.VERSION)
    copies = [f for f in files
              if (upstream / f).is_file() and (upstream / f).read_bytes() == (ROOT / f).read_bytes()]
    assert copies == []


def series_patches():
    """Every patch make upstream-patch exports: patches/series, then patches/standalone/"""
    return [l for l in (ROOT / "patches/series").read_text().splitlines() if l and not l.startswith("#")] + \
        sorted(p.name for p in (ROOT / "patches/standalone").glob("*.patch"))


def git_identity_env(name, email):
    """git configuration from the environment: it wins over every file."""
    return dict(os.environ, GIT_CONFIG_COUNT="2", GIT_CONFIG_KEY_0="user.name", GIT_CONFIG_VALUE_0=name,
                GIT_CONFIG_KEY_1="user.email", GIT_CONFIG_VALUE_1=email)


def export(out, env):
    return run_bounded([str(ROOT / "scripts/export-series.sh"), str(out)], "scripts/export-series.sh",
                       "make upstream-patch", timeout=600, cwd=ROOT, env=env)


def test_upstream_patch_is_signed_off_by_the_exporter(workdir):
    """make upstream-patch: every commit of both series is authored and
    signed off by the exporter's git identity, read at export time; the
    socket buffer fix is a series of its own."""
    out = workdir / "dist"
    ident = "Ada Lovelace <ada@example.org>"
    r = export(out, git_identity_env("Ada Lovelace", "ada@example.org"))
    assert r.returncode == 0, r.stderr
    socket_buffer = sorted((out / "socket-buffer").iterdir())
    tmp_file = sorted((out / "tmp-file").iterdir())
    assert tmp_file[0].name == "0000-cover-letter.patch"
    assert "action script" in tmp_file[0].read_text()
    tmp_file = tmp_file[1:]
    others = [p for s in SEPARATE_SERIES if s != "socket-buffer" for p in sorted((out / s).iterdir())]
    assert [p.name for p in socket_buffer] == ["0001-lib-c-make-room-for-a-big-request-in-the-socket-buff.patch"]
    assert len(socket_buffer) + len(others) + len(tmp_file) == len(series_patches())
    assert not any("socket" in p.name or "seize" in p.name or "errmsg" in p.name for p in tmp_file)
    for p in socket_buffer + others + tmp_file:
        text = p.read_text()
        assert re.search(r"^From: Ada Lovelace\s+<ada@example\.org>$", text, re.M), p.name
        assert re.findall(r"^Signed-off-by: .*$", text, re.M) == ["Signed-off-by: " + ident], p.name
        assert "criu.invalid" not in text and "criu --tmp-file developers" not in text, p.name
    # zdtm's test_author is the exporter too
    zdtm = next(p for p in tmp_file if "zdtm" in p.name).read_text()
    assert '+const char *test_author = "%s";' % ident in zdtm

    # A second export with another identity: taken at export time
    r = export(out, git_identity_env("Grace Hopper", "grace@example.org"))
    assert r.returncode == 0, r.stderr
    for p in (out / "tmp-file").iterdir():
        if p.name != "0000-cover-letter.patch":
            assert "Signed-off-by: Grace Hopper <grace@example.org>" in p.read_text()
        assert "Ada Lovelace" not in p.read_text()
    assert "From: Grace Hopper <grace@example.org>" in (out / "tmp-file/0000-cover-letter.patch").read_text()


def test_upstream_patch_without_a_git_identity_fails_clearly(workdir):
    out = workdir / "dist"
    r = export(out, git_identity_env("", ""))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export-series: no git identity"), r.stderr
    assert "git config --global user.name" in lines[0]
    assert not out.exists()


def test_upstream_patch_series_builds_commit_by_commit(workdir):
    """make check-series: the series of make upstream-patch applies with git am
    to the pristine pinned release, and every one of its commits builds."""
    r = run_bounded([str(ROOT / "scripts/check-series.sh"), str(workdir / "check")],
                    "scripts/check-series.sh", "build every commit of the series",
                    timeout=1800, cwd=ROOT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    built = re.findall(r"^check-series: (\S+) commit \d+ builds: (.*)$", r.stdout, re.M)
    patches = series_patches()
    assert len(built) == len(patches) >= 2
    # The fixes that are not --tmp-file are series of their own, one patch each
    series = {}
    for s, subject in built:
        series.setdefault(s, []).append(subject)
    assert {s: v for s, v in series.items() if s != "tmp-file"} == SEPARATE_SERIES
    assert len(series["tmp-file"]) == len(patches) - len(SEPARATE_SERIES)
    assert re.search(r"all %d commits \(.*tmp-file: %d.*\) apply to pristine %s and build, "
                     r"signed off by " % (len(patches), len(patches) - len(SEPARATE_SERIES),
                                          re.escape(UPSTREAM.VERSION)), r.stdout)
    tree = workdir / "check/tree"
    assert (tree / "criu/tmp-files.c").exists()
    out = run_bounded([str(tree / "criu/criu"), "--help"], "criu --help", "--help of the built series").stdout
    assert "--tmp-file PATH" in out


HANGING_CRIU = r"""#!/bin/sh
# A criu that never returns, as 4.1.1's dump on a machine whose hardware
# breakpoints never fire. It logs a line where criu would (-o, relative to
# -D; stderr without -o), starts a child, and sleeps. With FAKE_CRIU_HANG
# set, only that action hangs: "check" says "Looks good.", others fail.
if [ -n "${FAKE_CRIU_HANG:-}" ] && [ "$1" != swrk ] && [ "$1" != "$FAKE_CRIU_HANG" ]; then
	[ "$1" = check ] && { echo "Looks good."; exit 0; }
	exit 1
fi
log= dir=. prev=
for a in "$@"; do
	case $prev in -o) log=$a ;; -D) dir=$a ;; esac
	prev=$a
done
case $log in "") log=/dev/stderr ;; /*) ;; *) log=$dir/$log ;; esac
echo "(00.000001) fake criu $1: waiting for a breakpoint that never fires" >>"$log"
sleep 100000 &
[ -n "${FAKE_CRIU_PIDS:-}" ] && echo $$ $! >"$FAKE_CRIU_PIDS"
exec sleep 100000
"""


@pytest.fixture
def hanging_criu(workdir, monkeypatch):
    """The path of a criu that never returns; its pid and its child's are
    written to FAKE_CRIU_PIDS (workdir/fake.pids)."""
    fake = workdir / "criu"
    fake.write_text(HANGING_CRIU)
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_CRIU_PIDS", str(workdir / "fake.pids"))
    return fake


def assert_fake_criu_is_gone(workdir):
    for pid in map(int, (workdir / "fake.pids").read_text().split()):
        wait_gone(pid, timeout=5)


def test_a_hanging_criu_fails_the_test_step_within_its_limit(procs, workdir, hanging_criu):
    """The e2e tests' criu runner: the failure names the step and shows the
    log; criu and what it started are killed."""
    sleeper = procs.start(["sleep", "1000"])
    criu = Criu(workdir / "images", workdir, binary=str(hanging_criu))
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as e:
        criu.dump(sleeper.pid, "--tmp-file", "/tmp/x", timeout=2)
    assert time.monotonic() - t0 < 2 + 8
    msg = str(e.value)
    assert msg.startswith("criu dump (test step: dump of pid %d, in " % sleeper.pid), msg
    assert "test_a_hanging_criu_fails_the_test_step_within_its_limit" in msg
    assert "timed out after 2s; last lines of %s:" % (workdir / "dump-1.log") in msg
    assert "fake criu dump: waiting for a breakpoint that never fires" in msg
    assert_fake_criu_is_gone(workdir)
    assert alive(sleeper.pid)  # the dumped task is the test's to kill


def test_a_hanging_criu_swrk_fails_the_rpc_step_within_its_limit(app, criu, workdir, hanging_criu,
                                                                 monkeypatch):
    """The same for the RPC tests: a raw request, and pycriu."""
    monkeypatch.setattr(criutree, "CRIU", str(hanging_criu))
    criu.images.mkdir()
    app.start()
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as e:
        swrk_call(request("DUMP", "dump.log", pid=app.pid), criu.images, timeout=2)
    assert time.monotonic() - t0 < 2 + 8
    assert str(e.value).startswith("criu swrk (test step: RPC DUMP request of pid %d, in " % app.pid)
    # criu swrk never got to open its log: the message says where it would be.
    assert "timed out after 2s; no log at %s (No such file or directory)" % (
        criu.images / "dump.log") in str(e.value)
    assert_fake_criu_is_gone(workdir)

    c = pycriu.criu()
    c.use_binary(str(hanging_criu))
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as e:
        pycriu_call(c, "dump", "pycriu dump of pid %d" % app.pid, timeout=2)
    assert time.monotonic() - t0 < 2 + 8
    assert str(e.value).startswith("criu swrk (pycriu dump) (test step: pycriu dump of pid %d, in " % app.pid)
    assert_fake_criu_is_gone(workdir)
    assert alive(app.pid)


@pytest.mark.parametrize("step, title", [
    ("check", "criu check"),
    ("dump", "dump with --tmp-file"),
])
def test_a_hanging_criu_fails_the_demo_within_its_limit(workdir, hanging_criu, step, title):
    """make demo with a criu that never returns: a failure naming the step,
    with the log's tail, within CRIU_TIMEOUT (plus timeout's -k 5)."""
    env = dict(os.environ, CRIU_TIMEOUT="3", FAKE_CRIU_HANG=step)
    t0 = time.monotonic()
    r = run_bounded([str(ROOT / "scripts/demo.sh"), str(hanging_criu)], "scripts/demo.sh",
                    "demo with a criu that hangs at %s" % step, timeout=60, env=env, cwd=ROOT)
    elapsed = time.monotonic() - t0
    assert r.returncode != 0
    assert elapsed < 3 + 5 + 10, elapsed
    assert 'FAILED: step "%s": criu %s timed out after 3s (CRIU_TIMEOUT); last lines of ' % (
        title, step) in r.stderr, r.stderr
    assert "    (00.000001) fake criu %s: waiting for a breakpoint that never fires" % step in r.stderr
    assert "==> OK" not in r.stdout
    assert_fake_criu_is_gone(workdir)


@pytest.mark.parametrize("criu_timeout, e2e_limit, failure", [
    # each criu run's own limit: the test fails naming its step
    ("3", "5m", "criu dump (test step: dump of pid "),
    # the limit of the whole make step, should a run escape its own
    ("600", "15s", "FAILED: the e2e tests (pytest test/e2e) did not finish within 15s (killed)"),
])
def test_a_hanging_criu_fails_make_test_within_its_limit(workdir, hanging_criu, criu_timeout,
                                                          e2e_limit, failure):
    """make's e2e step (what make test and .ci/run run) with a criu that
    never returns: it fails, within its limits, naming the step."""
    env = dict(os.environ, CRIU_TIMEOUT=criu_timeout)
    env.pop("MAKEFLAGS", None)
    t0 = time.monotonic()
    r = run_bounded(["make", "-s", "--no-print-directory", "e2e", "CRIU=%s" % hanging_criu,
                     "E2E_LIMIT=" + e2e_limit,
                     "PYTEST_ARGS=test/e2e/test_restore.py -k issue65 -x -p no:randomly"],
                    "make e2e", "make e2e with a criu that hangs", timeout=300, env=env, cwd=ROOT)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 240
    assert failure in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    # the hung criu and what it started are gone (the inner tests' own
    # teardown killed the processes they started)
    assert_fake_criu_is_gone(workdir)


LAYERS = ROOT / "scripts/check-layers.sh"
OBJ_DIR = BUILD_TREE / "criu"


def test_tmp_files_modules_call_only_those_below_them(workdir):
    """scripts/check-layers.sh on the built objects: each tmp-files module
    calls only modules below it; a call from one module to one above it
    (here: hash, near the bottom, calling the tar header parser) is a cycle
    it names."""
    r = subprocess.run([str(LAYERS)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "each calls only those below it" in r.stdout

    objs = workdir / "objs"
    objs.mkdir()
    for o in OBJ_DIR.glob("tmp-files*.o"):
        (objs / o.name).write_bytes(o.read_bytes())
    (workdir / "up.c").write_text("int tmp_files_tar_header(const char *b, void *m);\n"
                                  "int tmp_files_up(void) { return tmp_files_tar_header(0, 0); }\n")
    subprocess.run(["cc", "-c", "-o", str(workdir / "up.o"), str(workdir / "up.c")], check=True, timeout=60)
    subprocess.run(["ld", "-r", "-o", str(workdir / "hash.o"), str(objs / "tmp-files-hash.o"),
                    str(workdir / "up.o")], check=True, timeout=60)
    (objs / "tmp-files-hash.o").write_bytes((workdir / "hash.o").read_bytes())
    r = subprocess.run([str(LAYERS), str(objs)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0
    assert "tmp-files-hash calls tmp_files_tar_header of tmp-files-tar, which is not below it" in r.stderr


def test_upstream_series_is_reviewable_units(workdir):
    """make upstream-patch: no commit of the tmp-file series adds over 1000
    lines; each tmp-files module (criu/tmp-files-*.c) comes in a commit of
    its own with its obj-y line in criu/Makefile.crtools, bottom first as
    scripts/check-layers.sh orders them; one commit per zdtm test."""
    out = workdir / "dist"
    r = export(out, git_identity_env("Ada Lovelace", "ada@example.org"))
    assert r.returncode == 0, r.stderr
    patches = sorted(p for p in (out / "tmp-file").iterdir() if p.name != "0000-cover-letter.patch")
    added = {}
    for p in patches:
        lines = p.read_text().splitlines()
        added[p.name] = sum(1 for l in lines if l.startswith("+") and not l.startswith("+++ "))
    assert max(added.values()) <= 1000, added

    layers = re.search(r'LAYERS="([^"]*)"', LAYERS.read_text()).group(1).split()
    order = []
    for p in patches:
        text = p.read_text()
        new = re.findall(r"^\+\+\+ b/criu/(tmp-files[a-z-]*)\.c$", text, re.M)
        for m in new:
            assert re.search(r"^\+obj-y\s+\+= %s\.o$" % re.escape(m), text, re.M), (p.name, m)
        assert len(new) <= 1, (p.name, new)
        order += new
    assert order == [m for m in layers if m in order]
    assert set(order) == {p.stem for p in (ROOT / "criu").glob("tmp-files*.c")}
    zdtm = [p.name for p in patches if "-zdtm-" in p.name]
    assert [re.search(r"tmp_file0\d", n).group(0) for n in zdtm] == ["tmp_file0%d" % i for i in range(5)]
