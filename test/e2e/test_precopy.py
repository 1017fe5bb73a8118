"""--tmp-file-precopy (issue 15): the saved paths are archived before the
freeze, and while frozen only what changed since.

The restored files must be the files as the freeze left them, whatever
the tree did between the pre-copy and the freeze. apps/churn.py changes
its directory as fast as it can: a file rewritten in place with the same
size and its mtime set back (many times within one clock tick of the
pre-copy's reads), a file written only through a shared mapping (no
ctime change at all on tmpfs), a name that is in turn a directory,
nothing, a file and a symlink, a hard link made and removed, files made
and removed. The dump kills the tree, so the files on disk after it are
the state at freeze: they are recorded, removed, and must come back
exactly, before the restored tree (left stopped) touches them.
"""
import os
import shutil
import subprocess
import time

import pytest

from conftest import alive, check_back, mounted_tmpfs, wipe_after_dump
from criutree import request, rpc, swrk_call
from precopy import between_the_passes, kept, restores_as_frozen, start_app, wait_ctimes_past

ROUNDS = int(os.environ.get("PRECOPY_ROUNDS", "25"))


@pytest.fixture(params=["tmpfs", "disk", "ramfs"])
def where(request, tmpdir_tmp):
    """The churning directory's filesystem: a tmpfs of the test's own
    (a write through a shared mapping never changes its ctime there), the
    disk /tmp is on, or a ramfs. On this kernel (6.18) tmpfs and ext4
    have multigrain timestamps: a change right after a stat() gets a new
    ctime. ramfs does not: its ctimes are jiffies, as every filesystem's
    were before 6.13, and a file rewritten in the tick the pre-copy
    reads it keeps its ctime."""
    if request.param == "disk":
        yield tmpdir_tmp
        return
    mnt = tmpdir_tmp / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", request.param, "-o", "size=64m", request.param, str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_restore_gives_the_state_at_freeze(procs, criu, workdir, where):
    env, ack, steps = between_the_passes(workdir)
    changed = again_total = moved = 0
    for i in range(ROUNDS):
        d = where / ("churn%d" % i)
        images = criu.images / str(i)
        d.mkdir()
        p = start_app(procs, "churn.py", d, workdir / "churn.ready", ack)
        env["CHURN_PID"] = str(p.pid)
        r = criu.dump(p.pid, "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress", "none",
                      images=images, env=env)
        assert r.returncode == 0, r
        p.wait(timeout=10)
        # The tree made a step between the passes, and criu saw what it changed
        assert len(steps.read_text().split()) == i + 1, steps.read_text()
        _, _, again, m = kept(r.log)
        assert str(d / "static") not in again
        assert again.get(str(d / "same")) == "changed since the pre-copy", again
        # Files archived again (directories, symlinks and fifos always are)
        changed += sum(not why.startswith("not a regular file") for why in again.values())
        again_total += len(again)
        moved += m
        restores_as_frozen(criu, procs, p, d, images)
        shutil.rmtree(images)
        shutil.rmtree(d)
    # (whether kept members had to be moved depends on timing here: see
    # test_tree_changed_between_the_passes)
    assert changed > ROUNDS, (changed, again_total, moved)


def test_tree_changed_between_the_passes(procs, criu, workdir, tmpdir_tmp):
    """apps/trigger.py changes a tree the moment the pre-copy reads its
    first file: a file deep in unchanged directories grows, files come and go,
    a mode and a link count change. The changed entries, the directories
    and the symlink are archived again, the unchanged file kept, and the
    restored tree is the tree at the freeze: directory times
    included, although the kept members of a directory and the members
    archived again for it are far apart in the archive, and kept members
    were moved over dropped ones."""
    d = tmpdir_tmp / "tree"
    d.mkdir()
    ready = workdir / "trigger.ready"
    # The freeze waits until the changes are made
    env, ack, _ = between_the_passes(workdir)
    env["CHURN_PID"] = ""
    p = start_app(procs, "trigger.py", d, ready, ack)
    wait_ctimes_past(d)  # every ctime older than the start of the pre-copy
    r = criu.dump(p.pid, "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress", "none", env=env)
    assert r.returncode == 0, r
    p.wait(timeout=10)
    assert ready.read_text().split()[1:] == ["changed"]
    k, n, again, moved = kept(r.log)
    # deep.txt, older than keep.bin, is dropped: the 1 MiB member moves down
    assert moved >= 1 << 20, moved
    changed = {"0trigger", "a", "a/b/c/deep.txt", "a/new.txt", "d", "e/f.txt", "hl1", "a/hl2", "d/hl3"}
    assert {str(d / c) for c in changed} <= set(again), again
    # Only a regular file's data is kept (issue 20): the symlink is
    # archived again, with no data, and so are the unchanged directories
    # unless the change record (tmp-files-watch.c, issue 22) was used: then
    # their members, which say exactly what their lstat() says, are kept
    assert str(d / "a/b/keep.bin") not in again, again
    record = "the frozen pass looks only at those" in r.log
    unchanged_dirs = {str(d / n) for n in ("", "a/b", "a/b/c", "e")}
    assert not (unchanged_dirs & set(again) if record else unchanged_dirs - set(again)), (record, again)
    assert k == (1 + len(unchanged_dirs) if record else 1)  # a/b/keep.bin
    restores_as_frozen(criu, procs, p, d)


RACY = "its ctime is not older than the pre-copy: it may have changed in the same clock tick"


def test_rewritten_in_the_tick_the_precopy_reads_it(procs, criu, workdir, where, request):
    """apps/racy.py rewrites its file until the pre-copy reads it, then
    once more at once, and never again. On ramfs the pre-copy's lstat(),
    its read and that last write share one jiffy, and the file keeps the
    ctime the pre-copy saw: only the rule "a ctime not older than the
    start of the pre-copy is archived again" catches it. Without that
    rule, such a round keeps the checksum read before the last write and
    the archive tar made after it: restore refuses it.

    That case depends on timing (rare here: the pre-copy reads a file 4
    to 8 ms after its lstat(), a tick is 4 ms; never with multigrain
    times). So racy.py also arms the rule in every dump: it rewrites
    big/z/armed the moment the walk opens big, before the walk reaches z,
    and never again; the walk sees a ctime not older than the start of
    the pre-copy, nothing else changes, and the rule alone must archive
    it again (in most rounds: racy.py says when the walk got to z before
    the rewrite was done)."""
    racy = armed = 0
    ready = workdir / "racy.ready"
    for i in range(ROUNDS):
        d = where / ("racy%d" % i)
        d.mkdir()
        p = start_app(procs, "racy.py", d, ready)
        images = criu.images / str(i)
        r = criu.dump(p.pid, "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress", "none",
                      images=images)
        assert r.returncode == 0, r
        p.wait(timeout=10)
        again = kept(r.log)[2]
        racy += again.get(str(d / "file")) == RACY
        said = ready.read_text().split("\n")[1]
        assert said in ("armed on time", "armed late", "never armed"), ready.read_text()
        armed += said == "armed on time" and again.get(str(d / "big/z/armed")) == RACY
        restores_as_frozen(criu, procs, p, d, images)
        shutil.rmtree(d)
    print("%s: the ctime rule caught the last write in %d of %d rounds, and the armed file in %d"
          % (request.node.name, racy, ROUNDS, armed))
    # The rule was exercised, and did its job, in most rounds
    assert armed >= ROUNDS * 3 // 4, armed


def test_unchanged_data_is_kept_and_the_app_goes_on(app, criu):
    """The #65 process: what did not change is kept from the pre-copy,
    what the tree wrote last is archived again; it restores as usual."""
    (app.dir / "cache").mkdir()
    for i in range(200):
        (app.dir / "cache" / ("c%03d" % i)).write_bytes(os.urandom(4096))
    old = time.time() - 60
    for p in [app.dir / "cache"] + list((app.dir / "cache").iterdir()):
        os.utime(p, (old, old))
    app.start()
    wait_ctimes_past(app.dir)
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-precopy")
    assert r.returncode == 0, r
    k, n, again, _ = kept(r.log)
    assert n == 200 + 5 and k >= 200, (k, n, again)
    assert not [a for a in again if "/cache/" in a], again
    log = wipe_after_dump(app)
    r = criu.restore()
    assert r.returncode == 0, r
    check_back(app, before, log)


def test_config_file_and_rpc_set_it(app, criu, workdir):
    """tmp-file-precopy in a configuration file, and criu_opts field 81
    (libcriu's criu_set_tmp_file_precopy(): test_libcriu.py)."""
    fields = rpc.criu_opts.DESCRIPTOR.fields_by_name
    assert fields["tmp_file_precopy"].number == 81
    conf = workdir / "precopy.conf"
    conf.write_text("tmp-file %s\ntmp-file-precopy\n" % app.dir)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--config", str(conf))
    assert r.returncode == 0, r
    kept(r.log)
    log = wipe_after_dump(app)
    assert criu.restore().returncode == 0
    check_back(app, before, log)

    criu.images = criu.images.parent / "rpc"
    criu.images.mkdir()
    before = app.tick()
    resp, status = swrk_call(request("DUMP", "dump.log", pid=app.pid, tmp_files=[str(app.dir)],
                                     tmp_file_precopy=True, tmp_file_compress="zstd"), criu.images)
    dump_log = (criu.images / "dump.log").read_text()
    assert resp.success, dump_log
    kept(dump_log)
    log = wipe_after_dump(app)
    assert criu.restore().returncode == 0
    check_back(app, before, log)


def test_tar_failure_before_the_freeze_fails_the_dump(app, criu, workdir):
    """A tar that cannot run at all fails the pre-copy: the dump fails
    before the freeze, with no archive left, and the tree never stopped."""
    fake = workdir / "bin"
    fake.mkdir()
    real = shutil.which("tar")
    (fake / "tar").write_text('#!/bin/sh\ncase "$*" in *--create*--no-recursion*) exit 2;; esac\nexec %s "$@"\n' % real)
    (fake / "tar").chmod(0o755)
    app.start()
    before = app.tick()
    env = dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"]))
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-precopy", "--leave-running", env=env)
    assert r.returncode != 0
    assert "Can't archive the --tmp-file paths before the freeze: tar failed" in r.log
    assert "Seized task" not in r.log
    assert not list(criu.images.glob("tmp-files*"))
    assert alive(app.pid)
    assert app.tick()["ticks"] == before["ticks"] + 1


def test_failure_in_the_frozen_pass_leaves_no_archive(procs, criu, tmpdir_tmp):
    """--tmp-file-auto over its limit fails the dump once the tree is
    frozen, after the pre-copy archived the named path: the pre-copy's
    archive is removed with the rest, and the tree runs on."""
    from conftest import Holder
    named = tmpdir_tmp / "named"
    named.mkdir()
    (named / "data").write_bytes(os.urandom(64 << 10))
    with mounted_tmpfs(tmpdir_tmp / "mnt", "16m") as mnt:
        (mnt / "big").write_bytes(b"z" * (256 << 10))
        h = Holder(procs, tmpdir_tmp / "holder.json", ["open:%s" % (mnt / "big")])
        r = criu.dump(h.pid, "--tmp-file", str(named), "--tmp-file-precopy", "--tmp-file-auto",
                      "--tmp-file-limit", "100K", "--leave-running")
        assert r.returncode != 0
        assert "Pre-copy: 2 of 2 entries archived" in r.log
        assert "over --tmp-file-limit 102400" in r.log
        assert not list(criu.images.glob("tmp-files*"))
        assert alive(h.pid)
        assert h.poke()



def test_nothing_changed_keeps_every_member(procs, criu, workdir, tmpdir_tmp):
    """Nothing changes between the passes: every member is the
    pre-copy's, no tar runs while frozen, the manifest is written without
    a child (tmp_files_start_manifest()), and a restore after a wipe gives
    back the files, modes and times as they were. (A symlink would be
    archived again: its member is whatever tar found at its name.)"""
    d = tmpdir_tmp / "quiet"
    (d / "sub").mkdir(parents=True)
    for i in range(50):
        (d / "sub" / ("f%02d" % i)).write_bytes(os.urandom(1000 + i))
    old = time.time() - 60
    for p in [d / "sub"] + list((d / "sub").iterdir()):
        os.utime(p, (old, old))
    wait_ctimes_past(d)
    p = procs.start(["sleep", "1000"], cwd=str(d))
    r = criu.dump(p.pid, "--tmp-file", str(d), "--tmp-file-precopy", "--tmp-file-compress", "none")
    assert r.returncode == 0, r
    p.wait(timeout=10)
    k, n, again, moved = kept(r.log)
    # The directories are kept too: the record says nothing changed
    assert (k, n, again, moved) == (52, 52, {}, 0), (k, n, again, moved)
    # (criu's own log and images on the same filesystem make events too)
    assert "the frozen pass looks only at those" in r.log, r.log[-3000:]
    restores_as_frozen(criu, procs, p, d)
