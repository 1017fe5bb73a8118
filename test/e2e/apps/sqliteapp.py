#!/usr/bin/python3
"""A process that keeps a SQLite database open in a temporary directory.

sqliteapp.py DB REPORT JOURNAL_MODE: opens DB (journal mode "delete", the
rollback journal, or "wal"), and on each SIGUSR1 inserts one row in its
own transaction. After each step it writes its view as JSON to REPORT:
the rows it has inserted, the rows the table holds, and the error of the
last insert, if any (SQLite refuses to write to a database whose file
was replaced: "attempt to write a readonly database").
"""
import json
import os
import signal
import sqlite3
import sys

db_path, report, mode = sys.argv[1], sys.argv[2], sys.argv[3]
db = sqlite3.connect(db_path, isolation_level=None)
db.execute("PRAGMA journal_mode=%s" % mode)
db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER, pad TEXT)")
inserted = 0
error = None


def step():
    global inserted, error
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?, ?)", (inserted + 1, "x" * 500))
        db.execute("COMMIT")
        inserted += 1
        error = None
    except sqlite3.Error as e:
        error = str(e)
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    rows = db.execute("SELECT count(*), coalesce(max(n), 0) FROM t").fetchone()
    view = {"pid": os.getpid(), "inserted": inserted, "rows": rows[0], "max": rows[1],
            "error": error, "ino": os.stat(db_path).st_ino}
    tmp = report + ".tmp"
    with open(tmp, "w") as f:
        json.dump(view, f)
    os.rename(tmp, report)


signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
step()
while True:
    signal.sigwaitinfo({signal.SIGUSR1})
    step()
