#!/bin/sh
# callgrind-ops.sh BENCHDIR [OUT] [ROWS] [WORKLOADS]: instructions per operation of every kheap-bench
# row, which do not depend on the machine's load. For every row (default: each plain backend, each
# hardened backend as <backend>_hardened, system (glibc), tcmalloc, jemalloc, mimalloc and
# pointer_increment) and workload (default: a b c p k) it runs BENCHDIR/kheap-bench (or
# kheap-bench-hardened) under callgrind for 1 timed repetition after the warm-up, without the
# footprint pass, collecting only inside the wrappers every row's allocations and frees go through
# (bench_alloc_* / bench_free_*, bench_inc_* for pointer_increment; inclusive: the wrapper, the
# front end and the backend, or the peer's malloc/free), and appends a line
#   "mode row workload Ir ops Ir_per_op"
# to OUT (default: stdout); Ir_per_op = Ir / (2 runs x ops). Compare two builds by running it on each.
# A row <backend>_cached (not in the default list) is that plain backend on a spin-locked heap with
# per-CPU caches, on CPU 0 (kheap-bench --caches on: the kernel's configuration on one CPU).
# Example: test/host/callgrind-ops.sh build/test/host /tmp/after.txt "fixed_size_block tcmalloc" "a p"
set -eu
dir=$1
out=${2:-/dev/stdout}
rows=${3:-"bump linked_list fixed_size_block bump_hardened linked_list_hardened fixed_size_block_hardened
system tcmalloc jemalloc mimalloc pointer_increment"}
workloads=${4:-"a b c p k"}
# The peers need this much static TLS; set here, kheap-bench does not re-execute itself (which would
# leave valgrind).
export GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384
for row in $rows; do
    for w in $workloads; do
        bin=$dir/kheap-bench mode=plain only=$row name=$row extra=
        toggle="--toggle-collect=bench_alloc_* --toggle-collect=bench_free_*"
        case $row in
        *_hardened) bin=$dir/kheap-bench-hardened mode=hardened ;;
        *_cached) mode=cached only=${row%_cached} name=${row%_cached} extra="--caches on" ;;
        pointer_increment)
            [ "$w" = a ] || continue
            only=none toggle="--toggle-collect=bench_inc_alloc --toggle-collect=bench_inc_free" ;;
        esac
        f=$(mktemp)
        log=$(mktemp)
        # shellcheck disable=SC2086 # $toggle and $extra are several words
        valgrind --tool=callgrind --callgrind-out-file="$f" $toggle \
            "$bin" 1 --plain-only --no-footprint --only "$only" --workload "$w" $extra >"$log" 2>/dev/null
        ir=$(grep -E '^(summary|totals):' "$f" | head -1 | awk '{print $2}')
        ops=$(sed -n "s/^BENCH allocator=$name workload=$w .* ops=\([0-9]*\).*/\1/p" "$log")
        if [ -z "$ops" ]; then
            echo "callgrind-ops.sh: no BENCH line for $row on $w" >&2
            exit 1
        fi
        echo "$mode $row $w $ir $ops $(awk "BEGIN { printf \"%.1f\", $ir / (2 * $ops) }")" >>"$out"
        rm -f "$f" "$log"
    done
done
