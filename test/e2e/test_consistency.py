"""The manifest describes exactly the bytes in the archive (issue 13.3).

A process outside the dumped tree appends to a saved file while the dump
archives it: tar and the manifest's checksums read the file at different
times. Such a dump must fail clearly, naming the file, with the tree
resumed and no images; a dump with no writer at work gives images that
restore the files exactly as they were at that dump.

The writer is armed, not timed: criu runs tar from PATH, and the test
puts first on PATH a tar that appends a line to the file and then runs
the real tar. The line is written after the dump took its reference time
and before tar reads the file, in every armed round; in the other rounds
the test appends between the dumps, when no dump runs.
"""
import os
import shutil

from conftest import alive, check_back

ROUNDS = 12


def test_writer_outside_the_tree(app, criu, workdir):
    shared = app.dir / "shared.log"
    shared.write_text("")
    fake = workdir / "bin"
    fake.mkdir()
    # stat first: on this kernel (multigrain times) the change made right
    # after a stat() gets a fine-grained ctime, never older than the dump's
    # reference time
    (fake / "tar").write_text(
        '#!/bin/sh\ncase "$*" in *--create*) stat "$TEST_FILE" >/dev/null; '
        'echo "written during dump $TEST_ROUND" >> "$TEST_FILE";; esac\n'
        'exec %s "$@"\n' % shutil.which("tar"))
    (fake / "tar").chmod(0o755)
    app.start()
    outcomes = {"refused": 0, "restored": 0}
    good = None
    for i in range(ROUNDS):
        armed = i % 2 == 1
        if not armed:
            with open(shared, "a") as f:
                f.write("written before dump %d\n" % i)
        before = app.tick()
        env = dict(os.environ, TEST_FILE=str(shared), TEST_ROUND=str(i))
        if armed:
            env["PATH"] = "%s:%s" % (fake, os.environ["PATH"])
        content = shared.read_text()
        r = criu.dump(app.pid, "--leave-running", "--tmp-file", str(app.dir), images=criu.images / str(i), env=env)
        if armed:
            # The writer did write during the dump
            assert shared.read_text() == content + "written during dump %d\n" % i
            assert r.returncode != 0, "dump %d: the file changed while it was saved, and the dump passed" % i
            assert "changed while it was saved (a writer outside the dumped tree?)" in r.log, r.log[-3000:]
            assert "%s" % shared in r.log
            assert not list((criu.images / str(i)).glob("tmp-files*"))
            assert alive(app.pid)
            assert app.tick()["ticks"] == before["ticks"] + 1
            outcomes["refused"] += 1
        else:
            assert r.returncode == 0, r
            assert shared.read_text() == content
            # What the files were at this dump: the app changes them only when it ticks
            good = (i, before, {p: p.read_bytes() for p in app.dir.iterdir()})
            outcomes["restored"] += 1
    assert outcomes == {"refused": ROUNDS // 2, "restored": ROUNDS - ROUNDS // 2}, outcomes
    # The last good images restore the files exactly as they were at their
    # dump, once the tree and the files are gone
    i, before, files = good
    log = files[app.dir / "app.log"].decode()
    app.popen.kill()
    app.wait_dead()
    shutil.rmtree(app.dir)
    r = criu.restore(images=criu.images / str(i))
    assert r.returncode == 0, r
    assert {p: p.read_bytes() for p in app.dir.iterdir()} == files
    check_back(app, before, log, files[app.dir / "state"])
