"""scripts/upstream.conf, the pinned upstream release, read from Python.

The tests and the benchmark take the version, the tarball's name and its
sha256 from here, as the shell scripts do with ". scripts/upstream.conf".
"""
from pathlib import Path
from types import SimpleNamespace

CONF = Path(__file__).resolve().with_name("upstream.conf")


def read(path=CONF):
    """The KEY=VALUE lines of upstream.conf as attributes (VERSION, TARBALL, SHA256)."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError("%s: not KEY=VALUE: %r" % (path, line))
            values[key.strip()] = value.strip().strip("\"'")
    return SimpleNamespace(**values)


UPSTREAM = read()
