#!/bin/sh
# callgrind-ops.sh BENCHDIR [OUT] [BACKENDS] [MODES]: instruction counts of kheap-bench, which do not
# depend on the machine's load. For every backend x mode x workload (a, b, c) it runs BENCHDIR/kheap-bench
# (or kheap-bench-hardened) for 1 timed repetition after the warm-up under callgrind, collecting only
# inside heap_alloc/heap_free (inclusive: the front end and the backend), and appends a line
# "mode backend workload Ir" to OUT (default: stdout); Ir / 4,000,000 is instructions per operation
# (warm-up and repetition, 2,000,000 operations each). Compare two builds by running it on each.
# MODES (default "plain hardened"): plain = the host default heap (no lock, no caches); hardened = the
# hardened library; cached = plain with a spin lock and per-CPU caches, on CPU 0 (kheap-bench --caches
# on: the kernel's configuration); floor = bump's floor, a bare pointer increment through the same
# loop as workload a (kheap-bench's pointer_increment(); one call per iteration, where the backends
# make two: alloc and free), printed as "floor pointer_increment a Ir".
# Example: test/host/callgrind-ops.sh build/test/host /tmp/after.txt "linked_list fixed_size_block"
set -eu
dir=$1
out=${2:-/dev/stdout}
backends=${3:-"bump linked_list fixed_size_block"}
modes=${4:-"plain hardened"}
total() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
for mode in $modes; do
    if [ "$mode" = floor ]; then
        f=$(mktemp)
        valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect=pointer_increment \
            "$dir/kheap-bench" 1 --plain-only --only bump --workload a >/dev/null 2>&1
        echo "floor pointer_increment a $(total "$f")" >>"$out"
        rm -f "$f"
        continue
    fi
    for b in $backends; do
        for w in a b c; do
            bin=$dir/kheap-bench; name=$b; extra=
            if [ "$mode" = hardened ]; then bin=$dir/kheap-bench-hardened; name=${b}_hardened; fi
            if [ "$mode" = cached ]; then extra="--caches on"; fi
            f=$(mktemp)
            # shellcheck disable=SC2086
            valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect=heap_alloc \
                --toggle-collect=heap_free "$bin" 1 --plain-only --only "$name" --workload "$w" $extra \
                >/dev/null 2>&1
            echo "$mode $b $w $(total "$f")" >>"$out"
            rm -f "$f"
        done
    done
done
