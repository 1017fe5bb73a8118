#!/bin/bash
# Regenerate the seed corpus (corpus/*/seed-*) from real GNU tar output and
# protoc-encoded manifests. The seeds are in the tree; run this only when
# the formats change. The regressions (corpus/*/crash-*) are kept as found.
# Needs: GNU tar, setfattr, protoc, the built tree (for images/tmp-file.proto).
set -eu
cd "$(dirname "$0")"
here=$(pwd)
proto=${PROTO:-../../images/tmp-file.proto}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -f corpus/*/seed-*
mkdir -p corpus/pax corpus/ustar corpus/stream corpus/path corpus/manifest

# The tree fuzz_ustar.c knows (its table "walked"), under $tmp/root/f
long=$(printf 'n%.0s' $(seq 120))
qdir=$(printf 'q%.0s' $(seq 90))
rname=$(printf 'r%.0s' $(seq 30))
r=$tmp/root
mkdir -p "$r/f/d" "$r/f/$qdir"
printf 'hello\n' >"$r/f/a"
: >"$r/f/d/x" && chmod 600 "$r/f/d/x"
ln "$r/f/a" "$r/f/h"
ln -s a "$r/f/l"
mkfifo "$r/f/p"
truncate -s 1M "$r/f/s" && printf x | dd of="$r/f/s" bs=1 seek=$((1024 * 1024 - 1)) conv=notrunc status=none
printf 'hello\n' >"$r/f/$long"
printf 'hello\n' >"$r/f/$qdir/$rname"
setfattr -n user.fuzz -v seed "$r/f/a" 2>/dev/null || true
touch -d @1700000000.123456789 "$r/f/a"

# Without --sparse, f/s (1 MiB) is left out: seeds stay small
# ustar has no room for the 120-byte name: left out there (skip)
names() { (cd "$r" && find f -print0 | sort -z | if [ "$sparse" ]; then cat; else grep -zv '^f/s$'; fi | grep -zv "${skip:-^$}"); }
sparse=
create() { # create FORMAT [tar options...]
	local fmt=$1
	shift
	names | tar -C "$r" --create --file=- --format="$fmt" --blocking-factor=1 --numeric-owner \
		--preserve-permissions --no-recursion --null --no-unquote --files-from=- "$@"
}

# ustar: whole archives, as the pre-copy's tar makes them, and in other formats
sparse=1
create posix --sparse --xattrs --xattrs-include='*' --acls >corpus/ustar/seed-posix.tar
create gnu --sparse >corpus/ustar/seed-gnu.tar
sparse=
create posix >corpus/ustar/seed-posix-plain.tar
skip=nnnn create ustar >corpus/ustar/seed-ustar.tar
head -c 512 corpus/ustar/seed-posix-plain.tar >corpus/ustar/seed-one-header
: >corpus/ustar/seed-empty

# pax: the records of every pax header in those archives, and a few by hand
/usr/bin/python3 - corpus/ustar/seed-posix.tar corpus/pax <<'PY'
import sys
data, out, off, n = open(sys.argv[1], "rb").read(), sys.argv[2], 0, 0
while off + 512 <= len(data) and data[off:off + 512] != bytes(512):
    h = data[off:off + 512]
    size = int(h[124:136].strip(b"\0 ") or b"0", 8)
    if h[156:157] == b"x":
        open("%s/seed-header-%02d" % (out, n), "wb").write(data[off + 512:off + 512 + size])
        n += 1
    off += 512 + (size + 511) // 512 * 512 if h[156:157] in (b"0", b"\0", b"x", b"S") else 512
PY
printf '30 path=f/some/long/name/here\n' >corpus/pax/seed-path
printf '16 linkpath=f/a\n11 size=42\n' >corpus/pax/seed-linkpath-size
printf '27 GNU.sparse.name=f/s\n26 GNU.sparse.major=1\n' >corpus/pax/seed-sparse
printf '12 path=' >corpus/pax/seed-truncated

# stream: archives as dump makes them (--format=posix, relative names), after
# one byte that says how many bytes each read gets (0: all at once; 61)
for f in seed-posix.tar seed-posix-plain.tar seed-ustar.tar seed-gnu.tar; do
	{ printf '\000'; cat "corpus/ustar/$f"; } >"corpus/stream/${f%.tar}-whole"
	{ printf '\075'; cat "corpus/ustar/$f"; } >"corpus/stream/${f%.tar}-by-61"
done
printf '\000' >corpus/stream/seed-empty

# path
printf '/tmp/a\n/tmp/a/b\n/tmp//c/./d/\n/\n/tmp/a/../b\n' >corpus/path/seed-mixed
printf '/tmp/app\n/tmp/app.d\n/tmp/app/x\n/tmp/ap\n/var/tmp/z\n' >corpus/path/seed-prefixes
printf '/././/x/.\n//\n/..x/x..\n' >corpus/path/seed-dots

# manifest: text format, encoded
enc() { protoc --proto_path="$(dirname "$proto")" --encode=tmp_files_manifest_entry "$proto" >"corpus/manifest/$1"; }
enc seed-demo <<'TXT'
paths: "/tmp/readme-demo/app"
format: "posix"
compression: "gzip"
entries { path: "/tmp/readme-demo/app" type: DIR mode: 493 uid: 0 gid: 0 mtime_sec: 1795771195 mtime_nsec: 257274095 }
entries { path: "/tmp/readme-demo/app/current.conf" type: SYMLINK mode: 511 uid: 0 gid: 0 target: "app.conf" }
entries { path: "/tmp/readme-demo/app/counter" type: REG mode: 420 uid: 0 gid: 0 size: 2 content_xxh64: 12071055279644586710 xattrs { name: "user.x" value_xxh64: 1 } }
entries { path: "/tmp/readme-demo/app/hl" type: HARDLINK mode: 420 uid: 0 gid: 0 target: "/tmp/readme-demo/app/counter" }
TXT
enc seed-two-paths <<'TXT'
paths: "/tmp/b"
paths: "/tmp/a"
compression: "zstd"
entries { path: "/tmp/b" type: REG mode: 384 uid: 1000 gid: 1000 size: 0 }
entries { path: "/tmp/a" type: FIFO mode: 420 uid: 0 gid: 0 }
TXT
enc seed-nested <<'TXT'
paths: "/tmp/a"
paths: "/tmp/a/b"
entries { path: "/tmp/a" type: DIR mode: 493 uid: 0 gid: 0 }
entries { path: "/tmp/a/b" type: DIR mode: 493 uid: 0 gid: 0 }
TXT
enc seed-empty </dev/null
echo "seeds: $(ls corpus/*/seed-* | wc -l) files in $here/corpus"
