"""Where the checkout is does not matter (issue 24).

A clone under /tmp runs "make demo-migrate" and the migration tests:
their host B has an empty tmpfs of its own on /tmp, where the clone is
not, so what B runs (criu, the service) must come from outside /tmp and no
service may keep the checkout as its cwd. The clone is made with "git
clone" of this checkout plus its uncommitted changes and new files; it
reuses this checkout's upstream tarball and built tree (copied with
their times, so make rebuilds only what differs).

A checkout in a path upstream's make cannot build in (a space, ":", "(",
...) is refused by the first make step, in one line that names the path,
before anything is installed, fetched or built.

Every step is bounded (run_bounded); the clones are removed at teardown.
"""
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, UPSTREAM, run_bounded

# A user's environment: not the one of the "make test" that runs us.
ENV = {k: v for k, v in os.environ.items()
       if k not in ("CRIU", "CRIU_TREE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL") and not k.startswith("PYTEST_")}


def git(*args, **kw):
    cmd = ["git"] + [str(a) for a in args]
    return run_bounded(cmd, "git", " ".join(cmd), timeout=60, **kw)


def clone(dest):
    """git clone of this checkout into dest, with its uncommitted changes
    and its new files (not ignored ones): the tree as it is."""
    if git("-C", ROOT, "rev-parse", "--git-dir").returncode != 0:
        pytest.skip("the checkout is not a git repository")
    r = git("clone", "-q", ROOT, dest)
    assert r.returncode == 0, r.stderr
    diff = git("-C", ROOT, "diff", "--binary", "HEAD").stdout
    if diff:
        with tempfile.TemporaryFile() as f:
            f.write(diff.encode())
            f.seek(0)
            r = git("-C", dest, "apply", "--whitespace=nowarn", stdin=f)
        assert r.returncode == 0, r.stderr
    new = git("-C", ROOT, "ls-files", "-z", "--others", "--exclude-standard").stdout
    for f in filter(None, new.split("\0")):
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


@pytest.fixture
def clone_in_tmp():
    d = Path(tempfile.mkdtemp(prefix="criu-e2e-clone.", dir="/tmp"))
    yield clone(d / "criu-tmpfile")
    shutil.rmtree(d, ignore_errors=True)


def test_clone_under_tmp_runs_demo_migrate_and_migration_tests(clone_in_tmp):
    c = clone_in_tmp
    (c / "build/cache").mkdir(parents=True)
    tarball = ROOT / "build/cache" / UPSTREAM.TARBALL
    if tarball.exists():
        shutil.copy2(tarball, c / "build/cache")
    tree = "build/criu-" + UPSTREAM.VERSION
    if (ROOT / tree / "criu/criu").exists():
        r = run_bounded(["cp", "-a", ROOT / tree, c / tree], "cp -a", "copy of the built tree", timeout=120)
        assert r.returncode == 0, r.stderr
    r = run_bounded(["make", "demo-migrate"], "make demo-migrate", "make demo-migrate in a clone under /tmp",
                    timeout=600, cwd=c, env=ENV)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    assert "OK: in B the process went on" in r.stdout, out[-4000:]
    assert "went A -> B -> A" in r.stdout, out[-4000:]

    r = run_bounded(["/usr/bin/python3", "-m", "pytest", "-p", "no:cacheprovider", "-q",
                     "test/e2e/test_migrate.py"], "pytest test_migrate.py",
                    "the migration tests from a clone under /tmp", timeout=600, cwd=c, env=ENV)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    summary = r.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed in ", summary), out[-4000:]


@pytest.fixture
def a_clone(workdir):
    return clone(workdir / "ok")


@pytest.mark.parametrize("name, what", [("with space", "a space"), ("a:b", "':'"), ("a(b)", "'('"),
                                        ("it's", '"\'"')])
def test_path_upstream_cannot_build_in_is_refused_at_once(a_clone, name, what):
    bad = a_clone.with_name(name) / "criu-tmpfile"
    bad.parent.mkdir()
    a_clone.rename(bad)
    r = run_bounded(["make", "demo"], "make demo", "make demo in %r" % str(bad), timeout=60, cwd=bad, env=ENV)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert ('the checkout is at "%s": upstream CRIU\'s make cannot build in a path with %s; '
            "clone the project elsewhere" % (bad, what)) in lines[0]
    # Nothing was fetched or built.
    assert not (bad / "build").exists()


def test_path_with_other_characters_is_accepted(a_clone):
    """Characters upstream's make takes (a full build in such a path was
    tried by hand) are let through."""
    ok = a_clone.with_name("x@y,z=w~v+u_1.2-é") / "criu-tmpfile"
    ok.parent.mkdir()
    a_clone.rename(ok)
    r = run_bounded(["make", "-n", "deps"], "make -n deps", "make -n deps in %r" % str(ok),
                    timeout=60, cwd=ok, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "./scripts/install-deps.sh"
