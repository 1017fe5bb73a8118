"""A real client: python3's sqlite3 with its database in a saved directory.

SQLite remembers the inode of its open database and refuses to write once
the file at that path is another inode (SQLITE_READONLY_DBMOVED). So a
restore that recreates a database that was still there breaks the
process, which plain CRIU would not: an entry that exists and matches the
saved one must be left alone.
"""
import json
import os
import shutil
import signal
import sqlite3

import pytest

from conftest import APPS, alive, wait_report


class SqliteApp:
    def __init__(self, procs, directory, report, mode):
        self.dir, self.report, self.mode, self.procs = directory, report, mode, procs
        self.db = directory / "data.db"

    def start(self):
        self.dir.mkdir()
        (self.dir / "notes.log").write_text("kept next to the database\n")
        self.popen = self.procs.start(["/usr/bin/python3", str(APPS / "sqliteapp.py"), str(self.db),
                                       str(self.report), self.mode],
                                      stdout=subprocess_devnull(), stderr=subprocess_devnull())
        self.pid = self.popen.pid
        return self.wait_view(lambda v: v["inserted"] >= 1)

    def wait_view(self, ok, timeout=10):
        return wait_report(lambda: json.loads(self.report.read_text()), ok,
                           "sqlite app %s: no report after %ss" % (self.pid, timeout), timeout)

    def step(self):
        self.report.unlink()
        os.kill(self.pid, signal.SIGUSR1)
        return self.wait_view(lambda v: True)


def subprocess_devnull():
    return open(os.devnull, "wb")


@pytest.fixture(params=["delete", "wal"])
def sqlite_app(request, procs, tmpdir_tmp, workdir):
    return SqliteApp(procs, tmpdir_tmp / "state", workdir / "sqlite.json", request.param)


def dump(app, criu):
    for _ in range(4):
        v = app.step()
        assert v["error"] is None, v
    # WAL mode holds POSIX locks on the -shm file: CRIU saves them with -l
    r = criu.dump(app.pid, "--file-locks", "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.popen.wait(timeout=10)
    return v


def test_not_wiped_sqlite_goes_on_writing(sqlite_app, criu):
    app = sqlite_app
    app.start()
    before = dump(app, criu)
    ino = app.db.stat().st_ino

    r = criu.restore("--file-locks")
    assert r.returncode == 0, r
    app.procs.track(app.pid)
    assert alive(app.pid)
    # Nothing was rewritten: same inode, and the log says so.
    assert app.db.stat().st_ino == ino
    assert "entries kept as they were, 0 written" in r.log, r.log[-2000:]
    for i in range(1, 4):
        v = app.step()
        assert v["error"] is None, v
        assert v["inserted"] == before["inserted"] + i
        assert v["rows"] == before["rows"] + i


def test_wiped_sqlite_database_comes_back_intact(sqlite_app, criu):
    app = sqlite_app
    app.start()
    before = dump(app, criu)
    shutil.rmtree(app.dir)

    r = criu.restore("--file-locks")
    assert r.returncode == 0, r
    app.procs.track(app.pid)
    assert alive(app.pid)
    # Every row committed before the dump is there, read by another client.
    with sqlite3.connect(app.db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*), max(n) FROM t").fetchone() == (before["rows"], before["max"])
    assert (app.dir / "notes.log").read_text() == "kept next to the database\n"
    # The documented limit (measured): the database is a new inode. In
    # rollback-journal mode SQLite, which remembers the inode of its
    # database, refuses to write to it from then on; in WAL mode it
    # goes on writing, and the database stays consistent.
    v = app.step()
    if app.mode == "delete":
        assert v["error"] == "attempt to write a readonly database", v
        assert v["rows"] == before["rows"]
    else:
        assert v["error"] is None, v
        assert v["rows"] == before["rows"] + 1
        with sqlite3.connect(app.db) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT count(*) FROM t").fetchone() == (before["rows"] + 1,)
