"""Upstream behaviour without --tmp-file: the record of the problem."""
import shutil

from conftest import wait_gone


def test_dump_restore_keeps_offsets(app, criu):
    app.start()
    before = app.tick()
    assert before["log_offset"] > 0 and before["state_offset"] > 4

    r = criu.dump(app.pid)
    assert r.returncode == 0, r
    app.wait_dead()

    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()

    after = app.tick()
    assert after["ticks"] == before["ticks"] + 1
    log = (app.dir / "app.log").read_text()
    # The restored task appended at its old offset: no gap, no overwrite.
    assert log == "".join("tick %d\n" % i for i in range(1, after["ticks"] + 1))
    assert after["log_offset"] == len(log)
    assert after["state_offset"] == before["state_offset"] + len("[%d]" % after["ticks"])


def test_restore_fails_when_the_temp_dir_is_gone(app, criu):
    """Issue #65: the file is gone at restore time and restore fails."""
    app.start()
    r = criu.dump(app.pid)
    assert r.returncode == 0, r
    app.wait_dead()

    shutil.rmtree(app.dir)
    r = criu.restore()
    assert r.returncode != 0
    assert "Can't open file" in r.output and "No such file or directory" in r.output, r
    wait_gone(app.pid)  # the task criu forked is gone
    assert not app.dir.exists()
