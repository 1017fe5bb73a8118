"""Images that lie: each made by hand from a good dump, each refused.

CRIU restores as root, and an image directory may come from anywhere.
Each case edits the archive or the manifest of a real dump, then
restores: the restore must fail with a clear error before any task is
created, and nothing on the restore target, nor in a scratch directory
the edits aim at, may change. Also: a member outside the saved paths, an
archive that does not match its manifest, a member of a type the manifest
cannot describe (GNU tar extracts a "contiguous" member, type '7', as a
regular file: issue 20), a truncated or bit-flipped archive; the data of
a file criu writes itself cut short, and a file beneath a symlink member.
"""
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import ARCHIVE, MANIFEST, dump_sleeper, rewrite_archive, snapshot, wait_gone
from criutree import pycriu


def member(name, data=b"", **kw):
    m = tarfile.TarInfo(name)
    m.size = len(data)
    for k, v in kw.items():
        setattr(m, k, v)
    return m, (data if m.isfile() else None)


def rewrite_manifest(images, change):
    path = images / MANIFEST
    with open(path, "rb") as f:
        img = pycriu.images.load(f)
    change(img["entries"][0])
    with open(path, "wb") as f:
        pycriu.images.dump(img, f)


class Case:
    def __init__(self, app, outside, images):
        self.rel = str(app.dir).lstrip("/")
        self.dir = app.dir
        self.outside = outside
        self.images = images


def absolute_member(c):
    rewrite_archive(c.images, lambda ms: ms + [member(str(c.outside / "abs"), b"owned\n")])


def dotdot_member(c):
    rewrite_archive(c.images, lambda ms: ms + [member(c.rel + "/../../" + str(c.outside).lstrip("/") + "/dd",
                                                      b"owned\n")])


def symlink_then_file(c):
    rewrite_archive(c.images, lambda ms: ms + [
        member(c.rel + "/link", type=tarfile.SYMTYPE, linkname=str(c.outside)),
        member(c.rel + "/link/through", b"owned\n")])


def hardlink_outside(c):
    rewrite_archive(c.images, lambda ms: ms + [
        member(c.rel + "/hl", type=tarfile.LNKTYPE, linkname=str(c.outside / "target").lstrip("/"))])


def not_in_manifest(c):
    rewrite_archive(c.images, lambda ms: ms + [member(c.rel + "/planted", b"owned\n")])


def content_changed(c):
    def change(ms):
        for m, data in ms:
            if m.name.endswith("app.conf"):
                data = b"mode=evil\n"  # same size
            yield m, data
    rewrite_archive(c.images, change)


def truncated_archive(c):
    p = c.images / ARCHIVE
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])


def truncated_manifest(c):
    p = c.images / MANIFEST
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])


def unknown_compression(c):
    rewrite_manifest(c.images, lambda m: m.__setitem__("compression", "lz77"))


def huge_size(c):
    def change(m):
        for e in m["entries"]:
            if e["path"].endswith("app.conf"):
                e["size"] = 1 << 60
    rewrite_manifest(c.images, change)


def duplicated_entry(c):
    def change(m):
        m["entries"].append(dict(m["entries"][-1]))
    rewrite_manifest(c.images, change)


def bad_manifest_path(c):
    rewrite_manifest(c.images, lambda m: m.__setitem__("paths", ["/" + c.rel + "/../.."]))


def saved_path_without_entry(c):
    """Finding 3 of issue 12: a saved path the manifest has no entry for."""
    def change(m):
        m["paths"].append("/" + c.rel + "-extra")
    rewrite_manifest(c.images, change)


def nested_saved_paths(c):
    rewrite_manifest(c.images, lambda m: m["paths"].append("/" + c.rel + "/app.conf"))


def hardlink_to_a_symlink(c):
    """A staged hardlink must share the inode of a regular file of the archive."""
    def edit_archive(ms):
        return ms + [member(c.rel + "/sl", type=tarfile.SYMTYPE, linkname=str(c.outside / "target")),
                     member(c.rel + "/hl", type=tarfile.LNKTYPE, linkname=c.rel + "/sl")]
    rewrite_archive(c.images, edit_archive)

    def change(m):
        base = dict(m["entries"][0])
        m["entries"].append(dict(base, path="/" + c.rel + "/sl", type="SYMLINK", target=str(c.outside / "target")))
        m["entries"].append(dict(base, path="/" + c.rel + "/hl", type="HARDLINK", target="/" + c.rel + "/sl"))
    rewrite_manifest(c.images, change)


def xattr_added(c):
    """Finding 4 of issue 12: an xattr added by editing the archive alone
    (security.capability the same way: python's tarfile cannot write its
    binary value, so a user.* one stands for it)."""
    def change(ms):
        for m, data in ms:
            if m.name.endswith("app.conf"):
                m.pax_headers["SCHILY.xattr.user.planted"] = "by the archive only"
            yield m, data
    rewrite_archive(c.images, lambda ms: list(change(ms)))


def member_twice(c):
    """app.conf twice, the second copy changed (state dropped, so that the
    listing has as many members and no more bytes): its checksum, taken
    when tar finished the first copy, must not stand for the second."""
    def change(ms):
        for m, data in ms:
            if m.name.endswith("/state"):
                continue
            yield m, data
            if m.name.endswith("app.conf"):
                yield m, b"mode=evil\n"  # same size
    rewrite_archive(c.images, lambda ms: list(change(ms)))


def member_renamed(c):
    """state under a name the manifest does not have (as many members, as
    many bytes)."""
    def change(ms):
        for m, data in ms:
            if m.name.endswith("/state"):
                m.name = m.name[:-len("state")] + "planted"
            yield m, data
    rewrite_archive(c.images, lambda ms: list(change(ms)))


def gzip_bomb(c):
    """Finding 5 of issue 12: a small image that extracts to much more (here
    64 MiB of zeros in place of app.conf, a few hundred KB compressed)."""
    def change(ms):
        for m, data in ms:
            if m.name.endswith("app.conf"):
                data = bytes(64 << 20)
                m.size = len(data)
            yield m, data
    rewrite_archive(c.images, lambda ms: list(change(ms)))
    assert (c.images / ARCHIVE).stat().st_size < 1 << 20


CASES = [
    # refused from the member's header, before its data reaches tar
    (absolute_member, "refusing to extract it"),
    (dotdot_member, "refusing to extract it"),
    (symlink_then_file, "refusing to extract it"),
    (hardlink_outside, "refusing to extract it"),
    (not_in_manifest, "refusing to extract it"),
    (content_changed, "app.conf (content checksum)"),
    (truncated_archive, "is damaged"),
    (truncated_manifest, MANIFEST),
    (unknown_compression, 'compressed with "lz77", which is not supported'),
    (huge_size, "app.conf as a member of type '0' that does not match its manifest (size)"),
    (duplicated_entry, "app.log twice: refusing to restore"),
    (bad_manifest_path, "Bad path"),
    (saved_path_without_entry, "has no entry for"),
    (nested_saved_paths, "Bad path"),
    (hardlink_to_a_symlink, "/hl as a member of type '1' that does not match its manifest"),
    (xattr_added, "app.conf (xattrs)"),
    (gzip_bomb, "refusing to extract it"),
    (member_twice, "app.conf twice: refusing to extract it"),
    (member_renamed, "planted, which is not in its manifest"),
]


@pytest.mark.parametrize("edit, message", CASES, ids=[c[0].__name__ for c in CASES])
def test_hostile_image_is_refused(app, criu, tmpdir_tmp, edit, message):
    outside = tmpdir_tmp / "outside"
    outside.mkdir()
    (outside / "target").write_text("outside the saved set\n")
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    edit(Case(app, outside, criu.images))
    (app.dir / "app.conf").write_text("mode=current\n")
    before = snapshot(app.dir, outside)

    r = criu.restore()
    assert r.returncode != 0
    assert message in r.errors(), r
    assert snapshot(app.dir, outside) == before
    assert not [n for n in os.listdir(tmpdir_tmp) if n.startswith(".criu")]
    # No task was created: the pid never came back.
    wait_gone(app.pid)
    assert "Forking task with" not in r.log


def test_member_outside_saved_paths_is_refused(app, criu, tmpdir_tmp):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    victim = tmpdir_tmp / "victim"
    victim.write_text("original\n")
    def plant(members):
        m = tarfile.TarInfo(str(victim).lstrip("/"))
        m.size = 6
        return members + [(m, b"owned\n")]

    rewrite_archive(criu.images, plant)
    # Something to restore: with every entry in place the archive is not read
    (app.dir / "app.conf").write_text("mode=changed\n")
    before = snapshot(app.dir)

    r = criu.restore()
    assert r.returncode != 0
    # A member the manifest does not have: refused from its header, before its data reaches tar
    assert "victim, which is not in its manifest: refusing to extract it" in r.output, r
    assert victim.read_text() == "original\n"
    assert snapshot(app.dir) == before


def grow(members):
    for m, data in members:
        if m.name.endswith("app.conf"):
            data = data + b"evil=1\n"
            m.size = len(data)
        yield m, data


def setuid(members):
    for m, data in members:
        if m.name.endswith("app.conf"):
            m.mode |= 0o4000
        yield m, data


def extra(members):
    yield from members
    m, data = next((m, d) for m, d in members if m.name.endswith("app.conf"))
    m2 = tarfile.TarInfo(m.name.replace("app.conf", "planted"))
    m2.size, m2.mtime = len(data), m.mtime
    yield m2, data


def missing(members):
    return [(m, d) for m, d in members if not m.name.endswith("app.conf")]


def renamed(members):
    """As many members and bytes as the manifest says: caught once extracted."""
    for m, data in members:
        if m.name.endswith("app.conf"):
            m.name = m.name.replace("app.conf", "planted")
        yield m, data


def resized(members):
    """The same total, one file longer and another shorter."""
    for m, data in members:
        if m.name.endswith("app.conf"):
            data = data + b"evil=1\n"
        elif m.name.endswith("/state"):
            data = data[:-7]
        m.size = len(data) if data is not None else m.size
        yield m, data


@pytest.mark.parametrize("change, message", [
    (grow, "refusing to extract it"),
    (setuid, "does not match its manifest at {dir}/app.conf (mode)"),
    (extra, "refusing to extract it"),
    (missing, "lacks {dir}/app.conf, which is in its manifest"),
    (renamed, "has {dir}/planted, which is not in its manifest"),
    (resized, "that does not match its manifest (size)"),
])
def test_archive_not_matching_its_manifest_is_refused(app, criu, change, message):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    rewrite_archive(criu.images, change)
    shutil.rmtree(app.dir)

    r = criu.restore()
    assert r.returncode != 0
    assert message.format(dir=app.dir) in r.output, r
    assert "refusing to restore" in r.output or "refusing to extract it" in r.output
    assert not app.dir.exists()
    wait_gone(app.pid)


def test_contiguous_member_is_refused(procs, criu, tmpdir_tmp):
    """A member of type '7' (contiguous), which GNU tar extracts as a
    regular file, made 4 MiB where the manifest allows 6 bytes."""
    app = Path(tmpdir_tmp) / "app"
    app.mkdir()
    (app / "f").write_text("saved\n")
    dump_sleeper(procs, criu, app)
    shutil.rmtree(app)

    def contiguous(members):
        out = []
        for m, data in members:
            if m.isfile():
                m.type = tarfile.CONTTYPE
                data = b"x" * (4 << 20)
                m.size = len(data)
            out.append((m, data))
        return out
    rewrite_archive(criu.images, contiguous)
    r = criu.restore()
    assert r.returncode != 0
    assert "as a member of type '7' that does not match its manifest (type)" in r.log, r.log[-3000:]
    assert not app.exists()


def damage_truncate(path):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def damage_flip(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 16):
        data[i] ^= 0xff
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip])
def test_damaged_archive_fails_restore_and_changes_nothing(app, criu, damage):
    with open(app.dir / "bulk", "wb") as f:
        f.write(os.urandom(256 << 10))
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    damage(criu.images / ARCHIVE)

    # What is on disk now must survive the failed restore untouched.
    (app.dir / "app.conf").write_text("mode=current\n")
    (app.dir / "bulk").unlink()
    before = snapshot(app.dir)

    r = criu.restore()
    assert r.returncode != 0
    # tar or gzip notice the damage, or, when a flip lands in file data that
    # gzip leaves unchecked (tar stops reading at its end marker), the
    # manifest's checksum does.
    assert ("The --tmp-file archive tmp-files.tar.img is damaged" in r.output or
            "does not match its manifest at %s (content checksum)" % (app.dir / "bulk") in r.output), r
    wait_gone(app.pid)  # the task criu forked is gone
    assert snapshot(app.dir) == before
    assert not [n for n in os.listdir("/tmp") if n.startswith(".criu-tmp-files")]


def test_data_cut_short_in_a_file_criu_writes(procs, criu, tmpdir_tmp):
    """Issue 22: the data of a regular member criu writes itself (not tar)
    ends early: nothing is placed, the stage is removed."""
    d = tmpdir_tmp / "app"
    d.mkdir()
    (d / "first").write_bytes(b"whole\n")
    (d / "bulk").write_bytes(os.urandom(1 << 20))
    dump_sleeper(procs, criu, d, "--tmp-file-compress", "none")
    shutil.rmtree(d)
    with tarfile.open(criu.images / ARCHIVE, "r:") as t:
        cut = t.getmember(str(d / "bulk").lstrip("/")).offset_data + (300 << 10)
    with open(criu.images / ARCHIVE, "r+b") as f:
        f.truncate(cut)

    r = criu.restore()
    assert r.returncode != 0
    assert "The --tmp-file archive is truncated after" in r.errors(), r
    assert "The --tmp-file archive tmp-files.tar.img is damaged" in r.errors(), r
    assert not d.exists()
    assert not [n for n in os.listdir(tmpdir_tmp) if n.startswith(".criu")]


def test_file_beneath_a_symlink_member_is_refused(app, criu, tmpdir_tmp):
    """Issue 22: archive and manifest both say that a regular file is under
    a symlink to a directory outside: criu, which writes the file itself,
    resolves its parent in the stage with no symlink, and writes nothing
    outside. (GNU tar makes a symlink to an absolute target only at its
    end, a placeholder file meanwhile: whichever of criu and tar comes
    first at "link", the other fails.)"""
    outside = tmpdir_tmp / "outside"
    outside.mkdir()
    (outside / "through").write_text("outside the saved set\n")
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir))
    assert r.returncode == 0, r
    app.wait_dead()
    rel = str(app.dir).lstrip("/")
    big = b"b" * (4 << 20)  # tar makes the symlink while criu writes this

    def edit(ms):
        return [member(rel + "/link", type=tarfile.SYMTYPE, linkname=str(outside)),
                member(rel + "/big", big)] + ms + [member(rel + "/link/through", b"owned\n")]
    rewrite_archive(criu.images, edit)

    def change(m):
        base = dict(m["entries"][0], mode=0o100644, uid=0, gid=0)
        base.pop("content_xxh64", None)
        base.pop("xattrs", None)
        m["entries"].append(dict(base, path=str(app.dir / "link"), type="SYMLINK", target=str(outside)))
        m["entries"].append(dict(base, path=str(app.dir / "big"), type="REG", size=len(big)))
        m["entries"].append(dict(base, path=str(app.dir / "link/through"), type="REG", size=6))
    rewrite_manifest(criu.images, change)
    shutil.rmtree(app.dir)
    before = snapshot(outside)

    r = criu.restore()
    assert r.returncode != 0
    assert "--tmp-file" in r.errors(), r
    assert snapshot(outside) == before
    assert (outside / "through").read_text() == "outside the saved set\n"
    assert not app.dir.exists()
    assert not [n for n in os.listdir(tmpdir_tmp) if n.startswith(".criu")]
    wait_gone(app.pid)
