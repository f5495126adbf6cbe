#!/usr/bin/env bash
# Installs the Debian packages pandagpm needs, once. Safe to run again: it
# only calls apt-get when something is missing. Needs root (or sudo).
set -euo pipefail

# Host build and tests.
HOST_PKGS="build-essential pkg-config libglib2.0-dev libcmocka-dev clang-14 \
clang-format-14 libclang-rt-14-dev valgrind file cpio xz-utils"
# Guest build (static x86_64 executables).
GUEST_PKGS="musl-tools"
# Guest builds for aarch64, arm (armhf), i386, mipsel and mips64el,
# static against the cross
# glibc, and qemu-user to run their tests (make -C guest check-arch,
# tests/test_guest_cross.py).
GUEST_CROSS_PKGS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
gcc-arm-linux-gnueabihf libc6-dev-armhf-cross gcc-i686-linux-gnu \
libc6-dev-i386-cross gcc-mipsel-linux-gnu libc6-dev-mipsel-cross \
gcc-mips64el-linux-gnuabi64 libc6-dev-mips64el-cross qemu-user"
# Big-endian guests have no Debian port (docs/arch.md): the guest frame
# code is cross-built for mips, ppc and ppc64 and run under qemu-user
# (make -C guest check-be); the guest side and tests/panda/bare build for
# mips and mips64 (tests/test_panda_real_mips.py).
GUEST_BE_PKGS="gcc-mips-linux-gnu libc6-dev-mips-cross gcc-powerpc-linux-gnu \
libc6-dev-powerpc-cross gcc-powerpc64-linux-gnu libc6-dev-ppc64-cross \
gcc-mips64-linux-gnuabi64 libc6-dev-mips64-cross"
# The ARM generic images: arm's structure offsets are compiled against
# its kernel's headers with the cross gcc 12 (pandagpm/image_arm.py).
IMAGE_PKGS="make gcc-arm-linux-gnueabihf"
# Real host: QEMU 10 from bookworm-backports (x86_64, arm, aarch64; i386
# is in qemu-system-x86; mipsel and mips64el in qemu-system-mips).
QEMU_PKGS="qemu-system-x86 qemu-system-arm qemu-system-mips qemu-utils"
# Fuzzing.
FUZZ_PKGS="afl++"
# The FUSE mount (pandagpm mount): fusermount3, and libfuse3 for pyfuse3.
FUSE_PKGS="fuse3 libfuse3-dev"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

backports=/etc/apt/sources.list.d/pandagpm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "[deps] adding the bookworm-backports apt source"
    $SUDO tee "$backports" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    rm -f /var/lib/apt/periodic/pandagpm-updated
fi

# The generic images of other arches are made of those arches' Debian
# packages (pandagpm/image.py, apt-get download): apt must serve them.
for a in arm64 armhf i386 mipsel mips64el; do
    if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
        echo "[deps] dpkg --add-architecture $a"
        $SUDO dpkg --add-architecture "$a"
        rm -f /var/lib/apt/periodic/pandagpm-updated
        force_update=1
    fi
done

missing=""
for p in $IMAGE_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
for p in $HOST_PKGS $GUEST_PKGS $GUEST_CROSS_PKGS $GUEST_BE_PKGS $FUZZ_PKGS $FUSE_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
need_qemu=0
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    ! qemu-system-x86_64 --version | grep -qE 'version (9|1[0-9])\.'; then
    need_qemu=1
fi
command -v qemu-img >/dev/null 2>&1 || need_qemu=1
# qemu-system-arm has both qemu-system-arm and qemu-system-aarch64.
command -v qemu-system-aarch64 >/dev/null 2>&1 || need_qemu=1
# qemu-system-mips has qemu-system-mipsel and qemu-system-mips64el.
command -v qemu-system-mips64el >/dev/null 2>&1 || need_qemu=1

if [ -z "$missing" ] && [ "$need_qemu" = 0 ] && [ -z "${force_update:-}" ]; then
    echo "[deps] system packages already installed"
    exit 0
fi

echo "[deps] apt-get update"
$SUDO apt-get update -q
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "[deps] installing:$missing"
    $SUDO apt-get install -y -q --no-install-recommends $missing
fi
if [ "$need_qemu" = 1 ]; then
    echo "[deps] installing QEMU from bookworm-backports"
    $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports $QEMU_PKGS
fi
echo "[deps] done"
