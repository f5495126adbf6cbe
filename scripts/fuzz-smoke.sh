#!/usr/bin/env bash
# Runs each named libFuzzer target for a bounded time on a scratch copy of
# its seed corpus; prints executions and crashes; fails on any crash.
set -uo pipefail
secs=$1
shift
total=0
status=0
for name in "$@"; do
    bin=fuzz/build/fuzz_$name
    work=fuzz/build/corpus-$name
    rm -rf "$work" fuzz/build/crash-$name
    mkdir -p "$work" fuzz/build/crash-$name
    cp fuzz/corpus/$name/* "$work"/
    log=fuzz/build/$name.log
    echo "[fuzz] $name for ${secs}s"
    "$bin" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
        -artifact_prefix=fuzz/build/crash-$name/ "$work" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(find fuzz/build/crash-$name -type f | wc -l)
    echo "[fuzz] $name: ${execs:-0} executions, $crashes crashes (exit $rc)"
    total=$((total + ${execs:-0}))
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        status=1
        tail -40 "$log"
    fi
done
echo "[fuzz] total: $total executions"
exit $status
