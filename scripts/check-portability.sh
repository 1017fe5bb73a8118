#!/bin/sh
# Compile the new CRIU code as upstream's CI would on its other targets:
# armv7 (32-bit) and aarch64 with Debian's cross compilers, clang, and
# musl (Alpine's libc, through musl-gcc), each with upstream's CFLAGS and
# -Werror (taken from upstream's own Makefile for that ARCH and CC).
#
# For each target, in a copy of the assembled tree (build/criu-VERSION:
# pristine + patches/series, plus the overlay), upstream's Makefile
# generates the per-target headers (include/common/asm, compel's asm
# links, config.h from its feature tests run with that compiler, the
# syscall tables); then each object is compiled with -c:
#   - every new criu/*.c and criu/unittest/*.c of the overlay,
#   - every criu/*.c that patches/series changes, and lib/c/criu.c,
#   - the new libcriu test (test/others/libcriu/test_tmp_file.c),
# and the new zdtm tests are built (zdtm's lib, then each test, linked).
# The protobuf-c sources are the native tree's (make build makes them;
# they are the same for every target), and so is criu/pie/restorer-blob.h
# (see below).
#
# Last, shellcheck -x on the new shell scripts (the zdtm hooks).
#
# Not checked: linking criu itself for the other targets (that needs the
# target's protobuf-c, libnl, libnet, ... which Debian does not install
# for a foreign architecture without multiarch), upstream files the
# series does not touch, and running anything.
#
# Usage: scripts/check-portability.sh [TARGET...]   (default: all four)
# Work directory: build/portability (PORTABILITY_WORK to change it).
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
. scripts/overlay.conf
TREE=$(realpath -m "${TREE:-build/criu-$VERSION}")
WORK=$(realpath -m "${PORTABILITY_WORK:-build/portability}")
TARGETS=${*:-armv7 aarch64 clang musl}
ZDTM_TESTS=$(for f in $(overlay_files); do
	case $f in test/zdtm/static/*.c) basename "$f" .c ;; esac
done | tr '\n' ' ')
NR_ZDTM=$(echo "$ZDTM_TESTS" | wc -w)

die() { echo "check-portability: $*" >&2; exit 1; }

[ -f "$TREE/images/rpc.pb-c.h" ] || die "no built tree at $TREE; run 'make build' first"

# The upstream C files the series changes, and the new ones.
sources() {
	for f in $(overlay_files); do
		case $f in criu/unittest/*.c) echo "$f" ;; criu/*/*) ;; criu/*.c | test/others/libcriu/*.c) echo "$f" ;; esac
	done
	grep -v '^#' patches/series | while read -r p; do
		sed -n 's|^+++ b/\(criu/[^/]*\.c\)$|\1|p; s|^+++ b/\(lib/c/[^/]*\.c\)$|\1|p' "patches/$p"
	done
}
SOURCES=$(sources | LC_ALL=C sort -u)

# Per target: ARCH, and the make variables that pick the compiler. A
# cross or musl build must not see the host's libraries: PKG_CONFIG=false
# leaves out every optional one (as a target without them would build).
target_vars() {
	case $1 in
	armv7) echo "ARCH=arm SUBARCH=armv7l CROSS_COMPILE=arm-linux-gnueabihf- PKG_CONFIG=false" ;;
	aarch64) echo "ARCH=aarch64 SUBARCH=aarch64 CROSS_COMPILE=aarch64-linux-gnu- PKG_CONFIG=false" ;;
	clang) echo "ARCH=x86 SUBARCH=x86_64 CC=clang" ;;
	musl) echo "ARCH=x86 SUBARCH=x86_64 CC=musl-gcc PKG_CONFIG=false" ;;
	*) return 1 ;;
	esac
}

# Headers a target's compiler does not search but CRIU needs, linked from
# the host (all of them are the same for every architecture): protobuf-c,
# libcap's and libuuid's; for musl-gcc also the kernel's (Alpine:
# linux-headers).
make_shim() {
	shim=$1 target=$2
	rm -rf "$shim"
	mkdir -p "$shim/sys" "$shim/google"
	ln -s /usr/include/protobuf-c "$shim/protobuf-c"
	ln -s /usr/include/google/protobuf-c "$shim/google/protobuf-c"
	ln -s /usr/include/sys/capability.h "$shim/sys/capability.h"
	ln -s /usr/include/libnl3/netlink "$shim/netlink"
	# util.c (CRS_EXIT_STATUS is ours) includes libuuid's (Alpine: util-linux-dev)
	ln -s /usr/include/uuid "$shim/uuid"
	if [ "$target" = musl ]; then
		ln -s /usr/include/linux "$shim/linux"
		ln -s /usr/include/asm-generic "$shim/asm-generic"
		ln -s "/usr/include/$(gcc -print-multiarch)/asm" "$shim/asm"
	fi
}

check_target() {
	t=$1
	vars=$(target_vars "$t") || die "unknown target $t (known: armv7 aarch64 clang musl)"
	dir=$WORK/$t
	src=$dir/criu
	log=$dir/build.log
	rm -rf "$dir"
	mkdir -p "$src"
	: >"$log"

	# The assembled tree: upstream + patches (committed), the overlay,
	# and the generated protobuf-c sources.
	git -C "$TREE" archive HEAD | tar -x -C "$src"
	for f in $(overlay_files); do
		mkdir -p "$src/$(dirname "$f")"
		cp -p "$f" "$src/$f"
	done
	(cd "$TREE" && find images -name '*.pb-c.[ch]' -print0 | xargs -0 cp --parents -t "$src")
	cp "$TREE/criu/protobuf-desc-gen.h" "$src/criu/"
	# cr-restore.c includes the restorer blob, which only a full build of
	# the target's PIE code makes: the native one stands in (it declares
	# the same names; only the blob's bytes and offsets differ).
	cp "$TREE/criu/pie/restorer-blob.h" "$src/criu/pie/"

	shim=$dir/shim
	make_shim "$shim" "$t"
	mkdir -p "$dir/libcriu-include"
	ln -s "$src/lib/c/criu.h" "$src/criu/include/version.h" "$src/images/rpc.pb-c.h" "$dir/libcriu-include/"
	# shellcheck disable=SC2086 # $vars is a list of words
	m() { make -s -C "$src" $vars USERCFLAGS="-idirafter $shim" "$@"; }

	# The per-target generated headers, by upstream's own rules.
	if ! m include/common/asm compel/include/asm criu/include/version.h \
		include/common/config.h compel/plugins/include/uapi/std/syscall-codes.h \
		>>"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "$t: upstream's Makefile could not generate the target's headers"
	fi
	# What upstream's Makefile sets for this target (a make rule, not shell)
	# shellcheck disable=SC2016
	print='print-%: ; @echo $($*)'
	cflags=$(m --eval "$print" print-CFLAGS 2>/dev/null | tail -n 1)
	cc=$(m --eval "$print" print-CC 2>/dev/null | tail -n 1)
	arch=$(m --eval "$print" print-ARCH 2>/dev/null | tail -n 1)
	case $cflags in *-Werror*) ;; *) die "$t: upstream's CFLAGS have no -Werror: $cflags" ;; esac

	fail=0 n=0
	for f in $SOURCES; do
		# criu/Makefile's and lib/c/Makefile's own flags
		case $f in
		criu/*) extra="-fno-strict-aliasing -iquote criu/include -iquote include -iquote images
			-iquote criu/arch/$arch/include -iquote . -I ./compel/include/uapi
			-DSYSCONFDIR=\"/etc\" -DGLOBAL_CONFIG_DIR=\"/etc/criu/\"
			-DDEFAULT_CONFIG_FILENAME=\"default.conf\" -DUSER_CONFIG_DIR=\".criu/\"" ;;
		lib/c/*) extra="-iquote criu/arch/$arch/include -iquote criu/include -iquote images
			-fPIC -fno-stack-protector" ;;
		# libcriu's tests see only the installed headers (make install-lib)
		test/others/libcriu/*) extra="-I $dir/libcriu-include" ;;
		esac
		n=$((n + 1))
		# shellcheck disable=SC2086 # flag lists
		if ! (cd "$src" && $cc -c $cflags $extra "$f" -o "${f%.c}.o") >"$dir/cc.log" 2>&1; then
			echo "check-portability: $t: $f does not compile:" >&2
			grep -v '^cc1: ' "$dir/cc.log" | head -n 15 >&2
			fail=1
		fi
		cat "$dir/cc.log" >>"$log"
	done

	# The new zdtm tests, with zdtm's own Makefiles and flags.
	# shellcheck disable=SC2086
	if ! { m -C test/zdtm/lib libzdtmtst.a && m -C test/zdtm/static $ZDTM_TESTS; } >>"$log" 2>&1; then
		echo "check-portability: $t: the zdtm tests ($ZDTM_TESTS) do not build:" >&2
		grep -E -B2 -A3 'error|warning' "$log" | tail -n 30 >&2
		fail=1
	fi
	[ "$fail" = 0 ] || die "$t: FAILED (full log: $log)"
	echo "check-portability: $t ($cc, ARCH=$arch): $n C files and $NR_ZDTM zdtm tests build with -Werror"
}

# The new shell scripts (the zdtm hooks) as upstream's "make lint" checks
# its own, with shellcheck -x; as #!/bin/sh they must also run under
# Alpine's busybox sh.
shell_scripts() {
	for f in $(overlay_files); do
		case $(head -n 1 "$f") in '#!/bin/sh'* | '#!/bin/bash'*) echo "$f" ;; esac
	done
}

echo "check-portability: compiling $(echo "$SOURCES" | tr "\n" " ")"
echo "check-portability: building zdtm/static/ $ZDTM_TESTS"
for t in $TARGETS; do
	check_target "$t"
done
# shellcheck disable=SC2046 # one file name a line, none with a space
shellcheck -x $(shell_scripts) || die "shellcheck: the new shell scripts are not clean"
echo "check-portability: shellcheck -x: $(shell_scripts | wc -l) new shell scripts are clean"
echo "check-portability: all of $TARGETS pass"
