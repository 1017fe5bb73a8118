"""What a --tmp-file dump saves, and what makes it fail.

Several paths, a file inside a saved directory, the images directory
inside a saved one; no image without the option; a missing path, a fifo
or a socket, no tar or a non-GNU tar, busybox's gzip (Alpine's), a full
images directory; the compression choices and a compressor failing after
the dump; a fault in the archive step resumes the tree; crit shows the
manifest and explains the archive; the manifest's checksums are XXH64
(python3-xxhash).

The manifest describes exactly the bytes in the archive (issue 13.3): a
process outside the dumped tree appends to a saved file while the dump
archives it, armed, not timed (a tar first on PATH appends a line to the
file, then runs the real tar): such a dump fails naming the file, with
the tree resumed and no images; the dumps between restore the files
exactly as they were.
"""
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import ARCHIVE, MANIFEST, TREE, alive, archive_names, check_back, dump_and_wipe



def test_several_paths_dir_and_file_inside(app, criu, tmpdir_tmp):
    other = tmpdir_tmp / "other.txt"
    other.write_text("other\n")
    before, state, log = dump_and_wipe(
        app, criu, "--tmp-file", str(app.dir), "--tmp-file", str(app.dir / "app.conf"),
        "--tmp-file", str(app.dir) + "/", "--tmp-file", "/" + str(other) + "//")
    names = archive_names(criu.images)
    rel = str(app.dir).lstrip("/")
    assert names == sorted([rel, rel + "/app.conf", rel + "/app.log", rel + "/state",
                            str(other).lstrip("/")])
    other.unlink()

    r = criu.restore()
    assert r.returncode == 0, r
    assert other.read_text() == "other\n"
    check_back(app, before, log, state)


def test_no_new_image_without_option(app, criu):
    app.start()
    r = criu.dump(app.pid)
    assert r.returncode == 0, r
    assert not (criu.images / ARCHIVE).exists()
    assert not (criu.images / MANIFEST).exists()
    assert "tmp-files" not in r.log


def test_missing_path(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir / "missing"))
    assert r.returncode != 0
    assert "--tmp-file %s: can't save it: No such file or directory" % (app.dir / "missing") in r.output, r
    assert alive(app.pid)
    app.tick()
    assert not (criu.images / ARCHIVE).exists()


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_file_refused(app, criu, kind):
    path = app.dir / kind
    if kind == "fifo":
        os.mkfifo(path)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(path))
    assert r.returncode != 0
    assert "--tmp-file %s: not a regular file, a directory or a symlink" % path in r.output, r
    assert alive(app.pid)
    app.tick()


def test_no_tar_in_path(app, criu, workdir):
    bindir = workdir / "bin"
    bindir.mkdir()
    env = dict(os.environ, PATH=str(bindir))
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=env)
    assert r.returncode != 0
    assert "--tmp-file needs GNU tar" in r.output, r
    assert alive(app.pid)
    app.tick()

    # A tar that is not GNU tar is refused as well.
    (bindir / "tar").write_text("#!/bin/sh\necho 'tar (busybox) 1.36'\n")
    (bindir / "tar").chmod(0o755)
    env["PATH"] = "%s:/usr/bin:/bin" % bindir
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=env)
    assert r.returncode != 0
    assert "tar in PATH is not GNU tar" in r.output, r
    assert alive(app.pid)
    app.tick()


def test_busybox_gzip(app, criu, workdir):
    """Alpine's gzip is busybox's, whose --version fails: the dump takes it
    (it is checked by compressing nothing), compresses with it, and the
    restore, where tar calls "gzip -d", decompresses with it."""
    bindir = workdir / "bin"
    bindir.mkdir()
    os.symlink("/bin/busybox", bindir / "gzip")  # busybox runs the applet named by argv[0]
    assert subprocess.run([bindir / "gzip", "--version"], capture_output=True).returncode != 0
    env = dict(os.environ, PATH="%s:/usr/bin:/bin" % bindir)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=env)
    assert r.returncode == 0, r
    with open(criu.images / ARCHIVE, "rb") as f:
        assert f.read(2) == b"\x1f\x8b", "the archive is not gzip-compressed"
    app.wait_dead()
    state = (app.dir / "state").read_bytes()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    r = criu.restore(env=env)
    assert r.returncode == 0, r
    check_back(app, before, log, state)


def test_full_images_dir(app, criu, workdir):
    """tar fails while the tree is frozen: the dump fails, the tree runs on."""
    small = workdir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)], check=True)
    try:
        big = app.dir / "big"
        with open(big, "wb") as f:
            f.write(os.urandom(48 << 20))
        app.start()
        before = app.tick()
        r = criu.dump(app.pid, "--tmp-file", str(app.dir), images=small / "img")
        assert r.returncode != 0
        assert "Can't archive the --tmp-file paths" in r.output, r
        assert alive(app.pid)
        after = app.tick()
        assert after["ticks"] == before["ticks"] + 1
        assert not (small / "img" / ARCHIVE).exists()
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_images_dir_inside_a_saved_dir_is_not_archived(app, criu, workdir):
    images = app.dir / "images"
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), images=images)
    assert r.returncode == 0, r
    app.wait_dead()
    rel = str(app.dir).lstrip("/")
    names = archive_names(images)
    assert names == [rel, rel + "/app.conf", rel + "/app.log", rel + "/state"]
    shutil.move(str(images), str(workdir / "moved"))
    state = (app.dir / "state").read_bytes()
    log = (app.dir / "app.log").read_text()
    shutil.rmtree(app.dir)
    r = criu.restore(images=workdir / "moved")
    assert r.returncode == 0, r
    check_back(app, before, log, state)


def crit_env():
    """crit and pycriu of the tree under test, for /usr/bin/python3 -m crit."""
    return dict(os.environ, PYTHONPATH="%s:%s" % (TREE / "crit", TREE / "lib"))


@pytest.mark.parametrize("compress, magic", [
    ("gzip", b"\x1f\x8b"), ("zstd", b"\x28\xb5\x2f\xfd"), ("none", None)])
def test_compression_choice(app, criu, compress, magic):
    with open(app.dir / "text", "w") as f:
        f.write("some compressible text line\n" * 20000)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file-compress", compress)
    assert r.returncode == 0, r
    app.wait_dead()
    head = (criu.images / ARCHIVE).read_bytes()[:4]
    if magic:
        assert head.startswith(magic)
    else:
        assert str(app.dir / "text").lstrip("/") in archive_names(criu.images, "r:")
    text = (app.dir / "text").read_text()
    shutil.rmtree(app.dir)

    # Restore needs no option: the choice is read from the images.
    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()
    assert app.tick()["ticks"] == before["ticks"] + 1
    assert (app.dir / "text").read_text() == text


def test_fault_in_archive_step_resumes_the_tree(app, criu):
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), env=dict(os.environ, CRIU_FAULT="7"))
    assert r.returncode != 0
    assert "Fault injected: the archive step fails" in r.output, r
    assert alive(app.pid)
    assert app.tick()["ticks"] == before["ticks"] + 1
    assert not (criu.images / ARCHIVE).exists()
    assert not (criu.images / "inventory.img").exists()


def test_crit_shows_the_manifest(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--tmp-file", str(app.dir / "state"))
    assert r.returncode == 0, r
    env = crit_env()
    out = subprocess.run(["/usr/bin/python3", "-m", "crit", "show", str(criu.images / MANIFEST)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    img = json.loads(out.stdout)
    assert img["magic"] == "TMP_FILES_MANIFEST"
    m = img["entries"][0]
    # The state file is saved with its directory: one path.
    assert m["paths"] == [str(app.dir)] and m["compression"] == "gzip"
    # rewritten after compression as a whole, through a directory of its own
    assert sorted(p.name for p in criu.images.iterdir() if "tmp-files" in p.name) == [MANIFEST, ARCHIVE]
    entries = {e["path"]: e for e in m["entries"]}
    assert sorted(entries) == [str(app.dir)] + [str(app.dir / n) for n in ("app.conf", "app.log", "state")]
    st = os.stat(app.dir / "app.conf")
    conf = entries[str(app.dir / "app.conf")]
    assert conf["type"] == "REG" and conf["size"] == st.st_size == 10
    assert conf["mode"] == st.st_mode & 0o7777 and conf["uid"] == 0
    assert conf["mtime_sec"] * 10**9 + conf["mtime_nsec"] == st.st_mtime_ns
    assert entries[str(app.dir)]["type"] == "DIR"


def test_crit_explains_the_raw_archive(app, criu):
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--leave-running")
    assert r.returncode == 0, r
    env = crit_env()
    archive = str(criu.images / ARCHIVE)
    out = subprocess.run(["/usr/bin/python3", "-m", "crit", "decode", "-i", archive],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "is the tar archive of the files saved with --tmp-file" in out.stderr
    assert "Unknown magic" not in out.stderr
    listing = subprocess.run(["tar", "-tvf", archive], capture_output=True, text=True, check=True)
    assert str(app.dir / "state").lstrip("/") in listing.stdout


def test_compression_failing_after_the_dump_keeps_the_archive(app, criu, workdir):
    """Compression runs after the tree is resumed: its failure loses nothing."""
    bindir = workdir / "bin"
    bindir.mkdir()
    # It compresses nothing (criu's check before the freeze), and fails on the archive.
    (bindir / "gzip").write_text('#!/bin/sh\n[ "$(head -c 1 | wc -c)" = 0 ] && exit 0\nexit 1\n')
    (bindir / "gzip").chmod(0o755)
    app.start()
    before = app.tick()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir),
                  env=dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"])))
    assert r.returncode == 0, r
    assert "The --tmp-file archive tmp-files.tar.img stays uncompressed" in r.output
    assert str(app.dir / "state").lstrip("/") in archive_names(criu.images, "r:")  # plain tar
    app.wait_dead()
    shutil.rmtree(app.dir)
    r = criu.restore()
    assert r.returncode == 0, r
    app.restored()
    assert app.tick()["ticks"] == before["ticks"] + 1


def content_xxh64(path):
    """The manifest's checksum, recomputed from its definition in
    images/tmp-file.proto with the reference XXH64 (python3-xxhash)."""
    import xxhash

    def chain(a, b):
        return xxhash.xxh64(a.to_bytes(8, "little") + b.to_bytes(8, "little")).intdigest()

    data = path.read_bytes()
    acc = 0
    for off in range(0, len(data), 64 << 10):
        block = data[off:off + (64 << 10)]
        if block.count(0) != len(block):
            acc = chain(chain(acc, off), xxhash.xxh64(block).intdigest())
    return chain(acc, len(data))


def test_manifest_checksums_are_xxh64(app, criu):
    """Checked against the reference XXH64: sizes around the 32- and
    64 KiB-block edges, a file with a hole, all zeros, empty."""
    files = {"empty": b"", "tiny": b"abc", "odd": os.urandom(37), "edge": os.urandom(64 << 10),
             "over": os.urandom((64 << 10) + 13), "zeros": bytes(200000)}
    for name, data in files.items():
        (app.dir / name).write_bytes(data)
    with open(app.dir / "holey", "wb") as f:
        f.write(b"start")
        f.seek(5 << 20)
        f.write(b"end")
    app.start()
    r = criu.dump(app.pid, "--tmp-file", str(app.dir), "--leave-running")
    assert r.returncode == 0, r
    env = crit_env()
    out = subprocess.run(["/usr/bin/python3", "-m", "crit", "show", str(criu.images / MANIFEST)],
                         capture_output=True, text=True, env=env, check=True)
    entries = {e["path"]: e for e in json.loads(out.stdout)["entries"][0]["entries"]}
    for name in list(files) + ["holey", "app.conf", "state"]:
        e = entries[str(app.dir / name)]
        assert int(e["content_xxh64"]) == content_xxh64(app.dir / name), name


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
