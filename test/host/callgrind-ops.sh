#!/bin/sh
# callgrind-ops.sh BENCHDIR [OUT] [BACKENDS]: instruction counts of kheap-bench, which do not depend on
# the machine's load. For every backend x mode x workload (a, b, c) it runs BENCHDIR/kheap-bench (or
# kheap-bench-hardened) for 1 timed repetition after the warm-up under callgrind, collecting only
# inside heap_alloc/heap_free (inclusive: the front end and the backend), and appends a line
# "mode backend workload Ir" to OUT (default: stdout). Compare two builds by running it on each.
# Example: test/host/callgrind-ops.sh build/test/host /tmp/after.txt "linked_list fixed_size_block"
set -eu
dir=$1
out=${2:-/dev/stdout}
backends=${3:-"bump linked_list fixed_size_block"}
for mode in plain hardened; do
    for b in $backends; do
        for w in a b c; do
            if [ "$mode" = plain ]; then bin=$dir/kheap-bench; name=$b; else bin=$dir/kheap-bench-hardened; name=${b}_hardened; fi
            f=$(mktemp)
            valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect=heap_alloc \
                --toggle-collect=heap_free "$bin" 1 --plain-only --only "$name" --workload "$w" >/dev/null 2>&1
            echo "$mode $b $w $(grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}')" >>"$out"
            rm -f "$f"
        done
    done
done
