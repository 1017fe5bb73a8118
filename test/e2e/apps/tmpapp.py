#!/usr/bin/python3
"""A process with state in a temporary directory (the upstream #65 case).

Its stdout is a log in DIR (the test redirects it), it holds DIR/state
open read-write at a non-zero offset, and it rereads DIR/app.conf by path
on every step. Each SIGUSR1 is one step: append "tick N" to the log,
write a record into the state file, reread the config. After each step it
writes its own view (fd offsets, config content) as JSON to REPORT.
"""
import json
import os
import signal
import sys

directory, report = sys.argv[1], sys.argv[2]
state = os.open(os.path.join(directory, "state"), os.O_RDWR)
os.lseek(state, int(os.environ.get("STATE_OFFSET", "4")), os.SEEK_SET)
ticks = 0


def step():
    global ticks
    ticks += 1
    os.write(1, b"tick %d\n" % ticks)
    os.write(state, b"[%d]" % ticks)
    try:
        with open(os.path.join(directory, "app.conf")) as f:
            conf = f.read()
    except OSError as e:
        conf = "ERROR: %s" % e.strerror
    view = {
        "pid": os.getpid(),
        "ticks": ticks,
        "log_offset": os.lseek(1, 0, os.SEEK_CUR),
        "state_offset": os.lseek(state, 0, os.SEEK_CUR),
        "conf": conf,
    }
    tmp = report + ".tmp"
    with open(tmp, "w") as f:
        json.dump(view, f)
    os.rename(tmp, report)


# sigwaitinfo on a blocked signal: no step can be lost between checks.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
step()
while True:
    signal.sigwaitinfo({signal.SIGUSR1})
    step()
