#!/usr/bin/python3
"""Holds files the ways a real program does, for --tmp-file-auto.

holder.py REPORT SPEC... where SPEC is open:PATH (an fd), map:PATH (a
MAP_SHARED mapping), child:PATH (an fd of a forked child), thread:PATH
(an fd opened by a second thread) or unlinked:PATH (opened, then
unlinked). Each SIGUSR1 writes to REPORT (and REPORT.child) what the
process reads through its fds and mappings, as JSON.
"""
import json
import mmap
import os
import signal
import sys
import threading

report, specs = sys.argv[1], sys.argv[2:]
held, maps, child_paths = {}, {}, []


def write_report(path, view):
    with open(path + ".tmp", "w") as f:
        json.dump(view, f)
    os.rename(path + ".tmp", path)


def read_fds():
    return {p: os.pread(fd, 4096, 0).decode() for p, fd in held.items()}


for spec in specs:
    kind, path = spec.split(":", 1)
    if kind in ("open", "unlinked"):
        held[path] = os.open(path, os.O_RDWR)
        if kind == "unlinked":
            os.unlink(path)
    elif kind == "map":
        fd = os.open(path, os.O_RDWR)
        maps[path] = mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED)
        os.close(fd)
    elif kind == "thread":
        t = threading.Thread(target=lambda p=path: held.__setitem__(p, os.open(p, os.O_RDWR)))
        t.start()
        t.join()
        # A thread that stays alive, so the tree has one.
        threading.Thread(target=lambda: threading.Event().wait(), daemon=True).start()
    elif kind == "child":
        child_paths.append(path)

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
if child_paths:
    child = os.fork()
    if child == 0:
        fds = {p: os.open(p, os.O_RDWR) for p in child_paths}
        while True:
            write_report(report + ".child", {p: os.pread(fd, 4096, 0).decode() for p, fd in fds.items()})
            signal.sigwaitinfo({signal.SIGUSR1})
else:
    child = None

while True:
    view = {"pid": os.getpid(), "child": child, "fds": read_fds(),
            "maps": {p: m[:].decode() for p, m in maps.items()}}
    write_report(report, view)
    signal.sigwaitinfo({signal.SIGUSR1})
    if child:
        os.kill(child, signal.SIGUSR1)
