#!/usr/bin/env bash
# Builds pandagpm._gpm with ASan and UBSan into build/asan (a copy of the
# package, so the in-place build is untouched) and runs the Python tests
# that need no QEMU against it. Python itself is not instrumented: the
# ASan runtime is preloaded, leak checking is off (the interpreter keeps
# memory at exit), and any sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
VPY=${VPY:-.venv/bin/python}
out=build/asan
rm -rf "$out"
mkdir -p "$out"
cp -r pandagpm "$out/"
rm -f "$out"/pandagpm/*.so
echo "[asan] building pandagpm._gpm with -fsanitize=address,undefined"
CC=clang-14 LDSHARED="clang-14 -shared" \
    GPM_EXTRA_CFLAGS="-Werror -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g -O1" \
    GPM_EXTRA_LDFLAGS="-fsanitize=address,undefined" \
    "$VPY" setup.py -q build_ext --build-lib "$out" --build-temp "$out/tmp" \
    >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
runtime=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so)
echo "[asan] pytest -m 'not e2e' with $runtime preloaded"
# The tests import pandagpm from build/asan, ahead of the checkout: -P
# keeps the current directory off sys.path, and this check proves it.
export PYTHONPATH="$PWD/$out" LD_PRELOAD="$runtime"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$VPY" -P -c 'import sys, pandagpm._gpm as g
if "/build/asan/" not in g.__file__:
    sys.exit("pytest-asan: imported " + g.__file__ + ", not the ASan build")
print("[asan] testing", g.__file__)'
"$VPY" -P -m pytest -q -p no:cacheprovider -m "not e2e" \
    -o pythonpath= --rootdir=. tests/test_py_errors.py \
    tests/test_py_manager.py tests/test_py_dispatch.py \
    tests/test_py_channels.py tests/test_py_lifetime.py \
    tests/test_panda_host.py tests/test_py_issue11.py
