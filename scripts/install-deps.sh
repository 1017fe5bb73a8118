#!/bin/sh
# Install every Debian package needed to build, run and test the patched
# CRIU, and to build its package (make deb: asciidoc-base and xmlto make
# the man pages, about 20 MB with their docbook dependencies), and to
# run make check-portability (the armv7 and aarch64 cross compilers,
# clang, musl-gcc; shellcheck); clang's runtimes (libFuzzer, ASan,
# UBSan) build the fuzz harnesses (make fuzz).
# Idempotent: prints nothing and runs no apt-get when all are present.
set -eu

PKGS="
build-essential pkg-config git xz-utils ca-certificates
libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
python3-protobuf libnl-3-dev libnl-route-3-dev libnet1-dev libcap-dev
libbsd-dev libnftables-dev uuid-dev libgnutls28-dev libaio-dev
libdrm-dev
tar gzip zstd iptables iproute2 util-linux procps acl attr
runc busybox-static podman
python3 python3-yaml python3-pytest python3-xxhash
gnuplot-nox
libclang-rt-14-dev
asciidoc-base xmlto
gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
gcc-aarch64-linux-gnu libc6-dev-arm64-cross clang musl-tools shellcheck
"
# LXC and containerd for test_lxc.py and test_containerd.py (issue 23):
# the tests start their own containers and containerd; no service of
# these packages is needed or started here.
PKGS="$PKGS
lxc containerd
"
# strace holds a system call of criu's in the pre-copy race tests
# (test_precopy_watch.py), so that a swap lands exactly there.
PKGS="$PKGS
strace
"
# crun with CRIU (scripts/build-crun.sh, make crun): the build
# dependencies of Debian's crun source package that its build here uses.
PKGS="$PKGS
gperf libsystemd-dev libyajl-dev libseccomp-dev libcap-dev
"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing (run as root)" >&2
	exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get -qq update >/dev/null
apt-get -qq install -y --no-install-recommends $missing </dev/null >/dev/null
