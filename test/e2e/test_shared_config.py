"""Issue 23: a configuration file shared by every tree on the host.

LXC and Podman with crun reach criu only through /etc/criu/default.conf,
which every criu run on the host reads. "tmp-file-optional PATH" there
saves PATH of the trees that have it and dumps the others without it,
with a warning naming it; "tmp-file PATH" would fail every other dump.
A dump refused before the freeze logs its reason once, and no second
error about a task it never seized.
"""
import os
import shutil
from pathlib import Path

from conftest import CRIU, alive, kill_tree, run_bounded, wait_gone


def test_optional_path_in_default_conf(default_conf, procs, criu, tmpdir_tmp):
    data = Path(tmpdir_tmp) / "data"
    default_conf.write_text("tmp-file-optional %s\n" % data)

    # A tree that has the path: saved, and back after a wipe
    data.mkdir()
    (data / "state").write_text("kept across the restore\n")
    with_data = procs.start(["sleep", "1000"])
    r = criu.dump(with_data.pid, images=criu.images / "with")
    assert r.returncode == 0, r
    with_data.wait(timeout=10)
    wait_gone(with_data.pid)
    shutil.rmtree(data)
    r = criu.restore(images=criu.images / "with")
    assert r.returncode == 0, r
    procs.track(with_data.pid)
    assert (data / "state").read_text() == "kept across the restore\n"
    kill_tree(with_data.pid)
    wait_gone(with_data.pid)

    # A tree that does not: dumped without it, and the log says so
    shutil.rmtree(data)
    without = procs.start(["sleep", "1000"])
    r = criu.dump(without.pid, images=criu.images / "without")
    assert r.returncode == 0, r
    assert "--tmp-file-optional %s: the dumped tree has no such path, it is not saved" % data in r.log
    without.wait(timeout=10)
    wait_gone(without.pid)
    r = criu.restore(images=criu.images / "without")
    assert r.returncode == 0, r
    procs.track(without.pid)
    assert not data.exists()
    kill_tree(without.pid)

    # criu check reads the same file and is not disturbed by the line
    r = run_bounded([CRIU, "check"], "criu check", "criu check with a shared default.conf")
    assert r.returncode == 0, r.stdout + r.stderr


def test_required_path_in_default_conf_fails_other_trees(default_conf, procs, criu, tmpdir_tmp):
    """The reason for the option: with "tmp-file", a tree without the path
    fails, naming it, and keeps running."""
    data = Path(tmpdir_tmp) / "data"
    default_conf.write_text("tmp-file %s\n" % data)
    tree = procs.start(["sleep", "1000"])
    r = criu.dump(tree.pid)
    assert r.returncode != 0
    assert "--tmp-file %s: can't save it: No such file or directory" % data in r.log, r
    assert alive(tree.pid)


def test_refused_dump_logs_one_error(procs, criu, tmpdir_tmp):
    """A dump refused before the tree is seized: the reason, then "Dumping
    FAILED", and no error about detaching from a task never seized."""
    tree = procs.start(["sleep", "1000"])
    missing = Path(tmpdir_tmp) / "missing"
    r = criu.dump(tree.pid, "--tmp-file", str(missing))
    assert r.returncode != 0
    errors = [ln for ln in r.log.splitlines() if "Error (" in ln and "RLIMIT_NOFILE" not in ln]
    assert len(errors) == 2, errors
    assert "--tmp-file %s: can't save it" % missing in errors[0]
    assert "Dumping FAILED" in errors[1]
    assert "Unable to detach" not in r.log
    assert alive(tree.pid)
    assert os.readlink("/proc/%d/exe" % tree.pid).endswith("sleep")
