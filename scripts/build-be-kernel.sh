#!/usr/bin/env bash
# Builds a big-endian MIPS (o32) Malta kernel from Debian's own kernel
# source, for the big-endian test under PANDA (tests/test_panda_real_mips.py,
# docs/arch.md "Big-endian guests"). Debian bookworm has no big-endian
# MIPS port, so there is no kernel package to download; its source and a
# cross compiler are in the registry:
#
#   linux-source-6.1      the kernel tree with Debian's patches (139 MB)
#   gcc-mips-linux-gnu    the cross compiler; flex and bison for kconfig
#
# The kernel's own malta_defconfig, switched to big-endian and without
# modules (nothing loads them: the test's initramfs has none), gives a
# vmlinux that QEMU's -kernel and PANDA's boot. The result is cached in
#   ${PANDAGPM_CACHE:-${XDG_CACHE_HOME:-~/.cache}/pandagpm}/kernels/mips-malta-<version>/vmlinux
# and its path printed on the last line. Measured on 2 shared cores,
# nice -n 19: 669 s wall, 17 CPU-minutes; a cached run takes no time.
#
#   scripts/build-be-kernel.sh [--src-tree DIR] [--jobs N]
#
# --src-tree uses an unpacked linux-source tree instead of the package.
set -euo pipefail

cache=${PANDAGPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pandagpm}/kernels
jobs=$(nproc)
src_tree=""
while [ $# -gt 0 ]; do
    case "$1" in
    --src-tree) src_tree=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-be-kernel: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
log() { echo "[be-kernel] $*" >&2; }
die() { echo "build-be-kernel: $*" >&2; exit 1; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
need=""
for p in gcc-mips-linux-gnu flex bison bc make xz-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"
done
if [ -n "$need" ]; then
    log "installing:$need"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $need
fi

version=$(apt-cache policy linux-source-6.1 | sed -n 's/^ *Candidate: *//p')
[ -n "$src_tree" ] && version=local-$(basename "$src_tree")
[ -n "$version" ] && [ "$version" != "(none)" ] || die "apt has no linux-source-6.1"
dir="$cache/mips-malta-$version"
if [ -f "$dir/vmlinux" ]; then
    echo "$dir/vmlinux"
    exit 0
fi
mkdir -p "$dir"
if [ -z "$src_tree" ]; then
    src_tree="$dir/src/linux-source-6.1"
    if [ ! -f "$src_tree/Makefile" ]; then
        log "downloading linux-source-6.1 $version"
        rm -rf "$dir/src" && mkdir -p "$dir/src"
        (cd "$dir/src" && apt-get download -q "linux-source-6.1=$version" >/dev/null 2>&1) ||
            die "apt-get download linux-source-6.1 failed"
        dpkg-deb --fsys-tarfile "$dir"/src/linux-source-6.1_*.deb |
            tar -xOf - --wildcards '*/linux-source-6.1.tar.xz' |
            tar -xJf - -C "$dir/src"
        rm -f "$dir"/src/linux-source-6.1_*.deb
    fi
fi
build="$dir/build"
mkdir -p "$build"
kmake() {
    nice -n 19 make -s -C "$src_tree" O="$build" ARCH=mips \
        CROSS_COMPILE=mips-linux-gnu- "$@"
}
log "configuring (malta_defconfig, big-endian, no modules)"
kmake malta_defconfig >/dev/null
"$src_tree/scripts/config" --file "$build/.config" \
    -d CPU_LITTLE_ENDIAN -e CPU_BIG_ENDIAN -d MODULES
kmake olddefconfig >/dev/null
grep -qx 'CONFIG_CPU_BIG_ENDIAN=y' "$build/.config" || die "not big-endian"
log "make -j$jobs vmlinux in $build"
start=$(date +%s)
kmake -j"$jobs" vmlinux >"$dir/build.log" 2>&1 ||
    { tail -20 "$dir/build.log" >&2; die "the kernel build failed; see $dir/build.log"; }
log "built in $(($(date +%s) - start)) s"
cp "$build/vmlinux" "$dir/vmlinux"
echo "$dir/vmlinux"
