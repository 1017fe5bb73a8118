#!/bin/sh
# build-deb.sh [OUTDIR]: the Debian package "criu" of the patched CRIU
# (criu, criu-ns, crit, pycriu, libcriu and its headers, compel, the man
# pages), written to OUTDIR (default dist/) as criu_VERSION-REV_ARCH.deb.
#
# It is named criu and versioned above Debian's own criu (bookworm:
# 3.17.1-2+deb12u2; sid: 4.2.1-1), so that dpkg and apt see it as an
# upgrade of that package and runc (Recommends: criu) finds it as "criu"
# on PATH. It carries every file Debian 12's criu has but the amdgpu
# plugin's man page, an example script, Debian's changelog and crit's
# egg-info. It also Conflicts with, Replaces and Provides the packages
# later Debian releases split criu into (libcriu2, libcriu-dev,
# python3-pycriu, libcompel1, libcompel-dev).
#
# The package is built in a tree of its own, build/deb/criu-VERSION,
# assembled like build/criu-VERSION from the pristine release, patches/
# and the overlay, and compiled with the paths it is installed at (criu
# compiles its plugin directory in, compel its own files' directory):
# PREFIX=/usr, LIBEXECDIR=/usr/lib as Debian has it. The build tree of
# "make build" (PREFIX=/usr/local) is left alone. Rebuilding is
# incremental. DEB_REVISION (default 1+tmpfile1) is the Debian revision.
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
TOP=$(pwd)
OUT=${1:-dist}
DEB_REVISION=${DEB_REVISION:-1+tmpfile1}
PKGVER=$VERSION-$DEB_REVISION
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
TREE=build/deb/criu-$VERSION
STAGE=$TOP/build/deb/stage
PY=/usr/lib/python3/dist-packages
# The Python parts and the man page tools (asciidoc is a Python program)
# need Debian's python3, not a pyenv one.
export PYENV_VERSION=system
die() { echo "build-deb: $*" >&2; exit 1; }

for t in dpkg-deb dpkg-shlibdeps asciidoc xmlto; do
	command -v $t >/dev/null || die "$t is missing: run scripts/install-deps.sh"
done

# 1. The tree; the build with the install paths, straight into the
# staging root with upstream's own install targets (one make: each run of
# CRIU's make spends about 20 s finding that nothing changed).
TREE=$TREE ./scripts/assemble.sh
PATHS="PREFIX=/usr LIBDIR=/usr/lib/$MULTIARCH LIBEXECDIR=/usr/lib PLUGINDIR=/usr/lib/criu PYTHON=/usr/bin/python3"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
# shellcheck disable=SC2086
make -s -C "$TREE" -j"$(nproc)" $PATHS DESTDIR="$STAGE" SKIP_PIP_INSTALL=1 \
	crit install-criu install-lib install-compel >/dev/null
# The man pages; asciidoc's warnings are shown, xmlto's notes are not.
# shellcheck disable=SC2086
make -s -C "$TREE" $PATHS docs >"$TOP/build/deb/docs.log" 2>&1 ||
	{ cat "$TOP/build/deb/docs.log" >&2; die "building the man pages failed"; }
grep -v -e '^Note: ' -e '^  GEN ' -e 'xternally managed' -e PIP_BREAK_SYSTEM_PACKAGES "$TOP/build/deb/docs.log" >&2 || true

# 2. What upstream leaves to pip or does not install.

# pycriu with its generated *_pb2 modules, and crit, where /usr/bin/python3
# finds them; /usr/bin/crit as the entry point pip would have made.
for pkg in lib/pycriu crit/crit; do
	(cd "$TREE/$pkg" && find . -name '*.py' ! -path '*/__pycache__/*') | while read -r f; do
		install -D -m 644 "$TREE/$pkg/$f" "$STAGE$PY/$(basename "$pkg")/$f"
	done
done
for f in pycriu/rpc_pb2.py pycriu/images/core_pb2.py pycriu/images/tmp_file_pb2.py; do
	[ -f "$STAGE$PY/$f" ] || die "$f is missing: pycriu's modules are not generated in $TREE/lib"
done
cat > "$STAGE/usr/bin/crit" <<'EOF'
#!/usr/bin/python3
import sys

from crit.__main__ import main

sys.exit(main())
EOF
chmod 755 "$STAGE/usr/bin/crit"
# Debian's Python: scripts name /usr/bin/python3, not the python3 on PATH.
sed -i '1s|^#!/usr/bin/env python3$|#!/usr/bin/python3|' "$STAGE/usr/sbin/criu-ns"

# The man pages (criu.8 documents --tmp-file), compressed as Debian does.
for m in criu.8 crit.1 criu-ns.1 compel.1; do
	sec=${m##*.}
	install -D -m 644 "$TREE/Documentation/$m" "$STAGE/usr/share/man/man$sec/$m"
	gzip -9n "$STAGE/usr/share/man/man$sec/$m"
done

DOC=$STAGE/usr/share/doc/criu
install -d "$DOC"
install -m 644 "$TREE/Documentation/tmp-file.txt" "$DOC/tmp-file.txt"
install -m 644 "$TREE/Documentation/tmp-file.html" "$DOC/tmp-file.html"
install -m 644 "$TREE/CREDITS" "$DOC/CREDITS"
{
	echo "CRIU $VERSION (https://criu.org/), with the --tmp-file patch series"
	echo "of this package's source repository applied."
	echo
	sed -n '1,/^----/p' "$TREE/COPYING" | sed '$d'
	echo "On Debian systems the licences are in /usr/share/common-licenses/GPL-2"
	echo "and /usr/share/common-licenses/LGPL-2.1."
} > "$DOC/copyright"

# Binaries and libraries without their debug information, as dh_strip
# does; libraries not executable, as dh_fixperms makes them. The ELF files
# are remembered for dpkg-shlibdeps.
shl=$TOP/build/deb/shlibdeps
rm -rf "$shl" && mkdir -p "$shl/debian"
find "$STAGE/usr" -type f \( -perm -u+x -o -name '*.a' -o -name '*.so*' \) | while read -r f; do
	case $(file -b "$f") in
	ELF*executable* | ELF*shared\ object*)
		strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f"
		echo "-e$f" >> "$shl/elves" ;;
	current\ ar\ archive*)
		strip --strip-debug "$f" ;;
	esac
	case $f in *.a | *.so.*) chmod 644 "$f" ;; esac
done

# 3. Control files. Depends: the shared libraries the ELF files need, as
# dpkg-shlibdeps finds them from the installed packages' shlibs and
# symbols files (it wants a debian/control: a minimal one), plus what
# pycriu and crit import.
printf 'Source: criu\n\nPackage: criu\nArchitecture: any\n' > "$shl/debian/control"
# shellcheck disable=SC2046
shlibs=$(cd "$shl" && dpkg-shlibdeps -O -S"$STAGE" $(cat elves) 2>warnings | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies: $(cat "$shl/warnings")"
rm -rf "$shl"

split="libcriu2, libcriu-dev, python3-pycriu, libcompel1, libcompel-dev"
provides=$(for p in $(echo "$split" | tr -d ,); do printf '%s (= %s), ' "$p" "$PKGVER"; done)
cat > "$STAGE/DEBIAN/control" <<EOF
Package: criu
Version: $PKGVER
Architecture: $ARCH
Maintainer: criu --tmp-file developers <tmp-file@criu.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
Depends: $shlibs, python3, python3-protobuf
Recommends: iproute2, zstd
Conflicts: $split
Replaces: $split
Provides: ${provides%, }
Section: admin
Priority: optional
Homepage: https://criu.org/
Description: checkpoint and restore in userspace, with --tmp-file
 CRIU $VERSION with the --tmp-file options: at dump, the named files and
 directories (a /tmp that is wiped at boot, a directory a migration target
 never had) are archived into the images while the tree is frozen; at
 restore they are put back before any task opens a file.
 .
 This package holds criu, criu-ns, crit, libcriu and its headers, the
 Python module pycriu, compel, and their manual pages.
EOF

# ldconfig for libcriu.so.2 and libcompel.so.1; their shlibs for others.
echo "activate-noawait ldconfig" > "$STAGE/DEBIAN/triggers"
printf 'libcriu 2 criu (>= %s)\nlibcompel 1 criu (>= %s)\n' "$PKGVER" "$PKGVER" > "$STAGE/DEBIAN/shlibs"
# Byte-compile pycriu and crit on install, remove the bytecode on removal,
# as dh_python3 does for Debian's criu.
cat > "$STAGE/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && command -v py3compile >/dev/null 2>&1; then
	py3compile -p criu
fi
EOF
cat > "$STAGE/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if command -v py3clean >/dev/null 2>&1; then
	py3clean -p criu
else
	dpkg -L criu | sed -En -e '/^(.*)\/(.+)\.py$/s,,rm -f "\1/__pycache__/\2".*,e'
fi
EOF
chmod 755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/prerm"
(cd "$STAGE" && find usr -type f | LC_ALL=C sort | xargs md5sum) > "$STAGE/DEBIAN/md5sums"

# 4. The package.
mkdir -p "$OUT"
deb=$OUT/criu_${PKGVER}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
echo "built $deb"
