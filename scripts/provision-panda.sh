#!/usr/bin/env bash
# Builds PANDA (panda-re/panda, a QEMU 2.9 fork) from a source tarball or
# tree into the per-user cache, with pandagpm's two plugins in its tree,
# and installs its pypanda (pandare) into a virtual environment.
#
#   scripts/provision-panda.sh --src PANDA_SRC [--targets LIST] [--venv DIR]
#
# PANDA_SRC is a .tar.xz/.tar.gz of the tree (one top folder) or a PANDA
# source directory. A build lands in
#   ${XDG_CACHE_HOME:-~/.cache}/pandagpm/panda/<commit12>-<arch+arch...>/
# (src/ with build/ inside it, where pypanda looks), keyed by the commit
# and the targets built there. Each requested target is looked up on its
# own: one already built for the same commit, in any cached tree, is
# reused as it is (never reconfigured or rebuilt), and only the missing
# targets are built, together, into a new tree keyed by them. So
# `--targets x86_64,aarch64,arm` after an x86_64 build builds
# <commit12>-aarch64+arm and leaves <commit12>-x86_64 alone. The tree of
# the first target given is written to .panda-path in the checkout
# (the test suite and `make test-panda` read it), and every tree used, one
# per line, to .panda-paths (pandagpm.pypanda.find_panda looks there for
# each arch). Targets recorded there by an earlier run stay in use
# (built or reused, plugins rebuilt) unless --only is given.
#
# Every run copies pandagpm's current plugin sources into each tree used
# and rebuilds them for its requested targets (PANDA's make rebuilds only
# what changed).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
src=""
targets="x86_64-softmmu"
venv="$here/.venv"
jobs=${JOBS:-$(nproc)}
gpm_plugins=1
only=0
cache_root=${PANDAGPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pandagpm}/panda

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "options:"
    echo "  --src PATH       PANDA source tarball or tree (required)"
    echo "  --targets LIST   comma-separated softmmu targets (default: x86_64-softmmu)"
    echo "  --venv DIR       install pandare here (default: the checkout's .venv)"
    echo "  --no-venv        do not install pandare"
    echo "  --jobs N         parallel make jobs (default: nproc)"
    echo "  --no-gpm-plugins do not build pandagpm's own PANDA plugins"
    echo "  --only           use exactly --targets, not also those an earlier run"
    echo "                   recorded in .panda-paths"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --src) src=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --venv) venv=$2; shift 2 ;;
    --no-venv) venv=""; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --no-gpm-plugins) gpm_plugins=0; shift ;;
    --only) only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "provision-panda: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "provision-panda: $*" >&2; exit 1; }
log() { echo "[panda] $*"; }

# The venv is used from other directories below: make it absolute.
[ -z "$venv" ] || venv=$(realpath -m "$venv")
[ -n "$src" ] || die "--src PATH is required (a PANDA source tarball or tree; see --help)"
[ -e "$src" ] || die "$src: no such file or directory"
src=$(readlink -f "$src")

# Targets: accept "x86_64" or "x86_64-softmmu", sort them for the key.
norm=""
for t in ${targets//,/ }; do
    case "$t" in *-softmmu) ;; *) t="$t-softmmu" ;; esac
    norm="$norm $t"
done
targets=$(echo $norm | tr ' ' '\n' | sort -u | paste -sd, -)
[ -n "$targets" ] || die "--targets is empty"
# The first target as given (not sorted): its tree is .panda-path's and
# pypanda's, so adding targets after x86_64 keeps x86_64's tree there.
first=$(echo $norm | cut -d' ' -f1)

# The commit identifies the source: PANDA_COMMIT in the tree (the
# tarball carries one), else git, else a hash of the tarball.
commit=""
if [ -d "$src" ]; then
    if [ -f "$src/PANDA_COMMIT" ]; then
        commit=$(tr -dc '0-9a-f' <"$src/PANDA_COMMIT")
    elif git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
        commit=$(git -C "$src" rev-parse HEAD)
    fi
    [ -f "$src/panda/plugins/config.panda" ] ||
        die "$src is not a PANDA source tree (no panda/plugins/config.panda)"
else
    case "$src" in
    *.tar.xz | *.txz | *.tar.gz | *.tgz | *.tar) ;;
    *) die "$src: expected a .tar.xz/.tar.gz tarball or a directory" ;;
    esac
    commit=$(tar -xOf "$src" --wildcards '*/PANDA_COMMIT' 2>/dev/null | tr -dc '0-9a-f' || true)
    [ -n "$commit" ] || commit=$(sha256sum "$src" | cut -c1-40)
fi
[ -n "$commit" ] || die "cannot tell which PANDA commit $src is"

# No "-softmmu" in the key: pandare strips "<arch>-softmmu" from paths it
# is given, which would break a cache path that contains it.
# Targets an earlier run put in use (the trees in .panda-paths, of this
# commit) stay in use, after the ones asked for, unless --only: a plain
# `make panda` (CI, docs/panda.md) keeps the ARM targets ready and their
# plugins current once they were asked for.
if [ "$only" = 0 ] && [ -f "$here/.panda-paths" ]; then
    while read -r old_tree; do
        d=$(dirname "$old_tree")
        [ -f "$d/.built" ] || continue
        case "${d##*/}" in "${commit:0:12}"-*) ;; *) continue ;; esac
        for a in $(echo "${d##*/${commit:0:12}-}" | tr + ' '); do
            case ",$targets," in
            *",$a-softmmu,"*) ;;
            *) targets="$targets,$a-softmmu"; log "$a-softmmu: kept in use (.panda-paths; --only drops it)" ;;
            esac
        done
    done <"$here/.panda-paths"
fi

key_of() { echo "${commit:0:12}-$(echo "$1" | sed 's/-softmmu//g; s/,/+/g')"; }

# A finished tree of this commit that has target $1 built, or nothing.
cached_tree_for() {
    local d arch=${1%-softmmu}
    for d in "$cache_root/${commit:0:12}"-*/; do
        d=${d%/}
        [ -f "$d/.built" ] || continue
        case "+${d##*/${commit:0:12}-}+" in *"+$arch+"*) ;; *) continue ;; esac
        [ -f "$d/src/build/$1/libpanda-$arch.so" ] || continue
        echo "$d"
        return 0
    done
    return 0
}

# Which requested targets are cached already (tree_of_<arch>=dir), and
# which ones to build.
missing_targets=""
for t in ${targets//,/ }; do
    d=$(cached_tree_for "$t")
    if [ -n "$d" ]; then
        eval "tree_of_${t%-softmmu}=\$d"
        log "$t: cached in $d"
    else
        missing_targets="$missing_targets,$t"
    fi
done
missing_targets=${missing_targets#,}
if [ -n "$missing_targets" ]; then
    key=$(key_of "$missing_targets")
else
    key=$(key_of "$targets")
fi
dir="$cache_root/$key"
tree="$dir/src"
stamp="$dir/.built"

# Debian packages PANDA's build needs (measured on bookworm).
pkgs="build-essential git pkg-config python3 python3-dev python3-pip python3-venv
python3-setuptools python3-wheel python3-jinja2 libglib2.0-dev libpixman-1-dev
zlib1g-dev libfdt-dev libcapstone-dev libprotobuf-c-dev protobuf-c-compiler
libprotobuf-dev protobuf-compiler libprotoc-dev libdwarf-dev libelf-dev
libjsoncpp-dev libffi-dev chrpath zip genisoimage libcurl4-gnutls-dev
libssl-dev libarchive-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    log "installing build packages:$missing"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

if [ -n "$missing_targets" ] && [ ! -f "$stamp" ]; then
    log "building PANDA ${commit:0:12} for $missing_targets in $dir"
    log "(a cold build takes about 4 minutes per target on 2 cores; docs/panda.md)"
    rm -rf "$dir"
    mkdir -p "$tree"
    if [ -d "$src" ]; then
        log "copying the source tree"
        (cd "$src" && tar --exclude=./build -cf - .) | tar -xf - -C "$tree"
    else
        log "unpacking $(basename "$src")"
        tar -xf "$src" -C "$tree" --strip-components=1
    fi
    echo "$commit" >"$dir/COMMIT"
    # mips64el-softmmu is the only target that builds the FIT loader (for
    # its Boston board), whose header includes <exec/hwaddr.h> with angle
    # brackets: QEMU 2.9 puts its own headers on the -iquote path only, so
    # the build stops there. Quote it, in this copy of the tree.
    sed -i 's|#include <exec/hwaddr.h>|#include "exec/hwaddr.h"|' \
        "$tree/include/hw/loader-fit.h"
    # Plugins that cannot build here: the Rust ones (no rustup),
    # wintrospection (needs libosi) and network (needs wireshark headers).
    cfg="$tree/panda/plugins/config.panda"
    cp "$cfg" "$cfg.orig"
    sed -i -E '/^(cosi|cosi_strace|gdb|rust_skeleton|snake_hook|wintrospection|network)$/d' "$cfg"
    mkdir -p "$tree/build"
    log "configure"
    (cd "$tree/build" && "$tree/configure" --target-list="$missing_targets" \
        --prefix="$dir/install" --disable-numa \
        --extra-cflags=-Wno-error --extra-cxxflags=-Wno-error) >"$dir/configure.log" 2>&1 ||
        die "configure failed; see $dir/configure.log"
    log "make -j$jobs (log: $dir/make.log)"
    start=$(date +%s)
    (cd "$tree/build" && make -j"$jobs") >"$dir/make.log" 2>&1 ||
        { tail -30 "$dir/make.log" >&2; die "PANDA's build failed; see $dir/make.log"; }
    log "built in $(($(date +%s) - start)) s"
    touch "$stamp"
fi
if [ -n "$missing_targets" ]; then
    for t in ${missing_targets//,/ }; do
        eval "tree_of_${t%-softmmu}=\$dir"
    done
fi

# The trees in use, each with the requested targets it holds.
trees=""
for t in ${targets//,/ }; do
    eval "d=\$tree_of_${t%-softmmu}"
    case " $trees " in *" $d "*) ;; *) trees="$trees $d" ;; esac
done
targets_in() {
    local t d out=""
    for t in ${targets//,/ }; do
        eval "d=\$tree_of_${t%-softmmu}"
        [ "$d" = "$1" ] && out="$out $t"
    done
    echo $out
}

# pandagpm's plugins: copy the checkout's current sources into the tree
# and build them with PANDA's own plugin rules (panda.mak), the way its
# "plugin-NAME" rule does. They stay out of config.panda, so changing them
# never makes PANDA regenerate its pandalog headers and rebuild.
for d in $trees; do
    tree="$d/src"
    if [ "$gpm_plugins" = 1 ]; then
        log "building pandagpm's plugins in $tree for $(targets_in "$d")"
        make -s -C "$here" --no-print-directory -f mk/panda.mk panda-plugins \
            PANDA_PATH="$tree" GPM_PANDA_NO_CONFIG=1 >/dev/null
        : >"$d/make-plugins.log"
        for t in $(targets_in "$d"); do
            for p in guest_plugin_manager linjector; do
                mkdir -p "$tree/build/$t/panda/plugins/$p"
                make -C "$tree/build/$t" --no-print-directory -j"$jobs" \
                    -f "$tree/panda/plugins/panda.mak" \
                    -f "$tree/panda/plugins/$p/Makefile" \
                    PLUGIN_SRC_ROOT="$tree/panda/plugins" BUILD_DIR="$tree/build" \
                    PLUGIN_NAME="$p" all >>"$d/make-plugins.log" 2>&1 ||
                    { tail -30 "$d/make-plugins.log" >&2; die "building panda_$p.so for $t failed; see $d/make-plugins.log"; }
            done
        done
    fi
    for t in $(targets_in "$d"); do
        arch=${t%-softmmu}
        want="syscalls2 osi osi_linux"
        [ "$gpm_plugins" = 0 ] || want="guest_plugin_manager linjector $want"
        for p in $want; do
            f="$tree/build/$t/panda/plugins/panda_$p.so"
            [ -f "$f" ] || die "missing after the build: $f"
        done
        [ -f "$tree/build/$t/libpanda-$arch.so" ] || die "missing after the build: libpanda-$arch.so"
    done
done

# pypanda (pandare) is the same Python code for every target (its
# datatypes cover all arches): install it from the first target's tree
# (as given); find_panda() hands it each arch's libpanda and plugins.
eval "dir=\$tree_of_${first%-softmmu}"
tree="$dir/src"
stamp="$dir/.built"

if [ -n "$venv" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        python3 -m venv "$venv"
    fi
    vpy="$venv/bin/python"
    core="$tree/panda/python/core"
    if ! "$vpy" -c 'import pandare, os, sys; sys.exit(0 if os.path.realpath(pandare.__file__).startswith(os.path.realpath(sys.argv[1])) else 1)' "$core" 2>/dev/null; then
        log "installing pypanda (pandare) from the tree into $venv"
        "$vpy" -m pip install -q "cffi>1.14.3" "protobuf>=4.25.1" colorama setuptools_scm capstone setuptools wheel
        "$vpy" -m pip uninstall -q -y pandare >/dev/null 2>&1 || true
        (cd "$core" && "$vpy" -m pip install -q --no-build-isolation -e .)
    fi
    if [ ! -f "$core/pandare/autogen/panda_datatypes.py" ] || [ "$stamp" -nt "$core/pandare/autogen/panda_datatypes.py" ]; then
        log "generating pandare's datatypes"
        (cd "$core" && "$vpy" -c "from create_panda_datatypes import main; main(install=False)") >"$dir/pypanda.log" 2>&1 ||
            die "pandare's create_panda_datatypes failed; see $dir/pypanda.log"
    fi
    (cd / && "$vpy" -c 'import pandare') || die "import pandare fails in $venv"
fi

echo "$tree" >"$here/.panda-path"
for d in $trees; do echo "$d/src"; done >"$here/.panda-paths"
for t in ${targets//,/ }; do
    eval "d=\$tree_of_${t%-softmmu}"
    log "ready: $t in $d/src"
done
log "ready: PANDA_PATH=$tree"
