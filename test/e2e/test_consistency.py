"""The manifest describes exactly the bytes in the archive (issue 13.3).

A process outside the dumped tree appends to a saved file throughout the
dump: tar and the manifest's checksums read the file at different times.
Each dump must either fail clearly, naming the file, with the tree
resumed, or give images that restore.
"""
import shutil

from conftest import alive, kill_tree


def test_writer_outside_the_tree(app, criu, procs, tmpdir_tmp):
    shared = app.dir / "shared.log"
    shared.write_text("")
    app.start()
    # Bursts of appends from outside the tree, with pauses
    writer = procs.start(["/bin/sh", "-c",
                          'while :; do for i in 1 2 3 4 5 6 7 8; do echo "$i $(date +%s.%N)" >> "$1"; done; '
                          'sleep 0.05; done', "-", str(shared)])
    outcomes = {"refused": 0, "restored": 0}
    for i in range(40):
        before = app.tick()
        r = criu.dump(app.pid, "--leave-running", "--tmp-file", str(app.dir), images=criu.images / str(i))
        if r.returncode != 0:
            assert "changed while it was saved (a writer outside the dumped tree?)" in r.log, r.log[-3000:]
            assert "%s" % shared in r.log
            assert not list((criu.images / str(i)).glob("tmp-files*"))
            assert alive(app.pid)
            assert app.tick()["ticks"] == before["ticks"] + 1
            outcomes["refused"] += 1
            continue
        # Good images: they restore, after the tree and the files are gone.
        outcomes["restored"] += 1
        if outcomes["refused"]:
            break
    # Seen both ways; the last good images restore once the writer, the
    # tree and the files are gone.
    kill_tree(writer.pid)
    assert outcomes["restored"] and outcomes["refused"], outcomes
    app.popen.kill()
    app.wait_dead()
    shutil.rmtree(app.dir)
    r = criu.restore(images=criu.images / str(i))
    assert r.returncode == 0, r
    app.restored()
    assert (app.dir / "app.conf").read_text() == "mode=fast\n"
    assert (app.dir / "shared.log").stat().st_size > 0
