#!/bin/sh
# test_bench_peers.sh KHEAP_BENCH: KHEAP_BENCH_PEERS adds a peer row (here a second glibc, libc.so.6
# in a namespace of its own, which every machine has), passes its symbols on, and refuses malformed
# entries with status 2 and a message naming the variable.
set -u
bench=$1
fail() { echo "test_bench_peers: $*" >&2; exit 1; }
run() { KHEAP_BENCH_PEERS=$1 "$bench" 1 --plain-only --no-footprint --steps 1000 --workload a --only "$2" 2>&1; }

out=$(run "glibc2=libc.so.6" glibc2) || fail "a well-formed peer failed: $out"
echo "$out" | grep -q '^BENCH allocator=glibc2 workload=a ns_per_op=[0-9]' || fail "no BENCH line for glibc2: $out"
out=$(run "glibc3=libc.so.6:malloc:free" glibc3) || fail "explicit symbols failed: $out"
echo "$out" | grep -q '^BENCH allocator=glibc3 workload=a ' || fail "no BENCH line for glibc3: $out"
out=$(run "g=libc.so.6:no_such_alloc:free" g) || fail "a missing symbol must give a row, not an error: $out"
echo "$out" | grep -q '^g .*not installed' || fail "a missing symbol is not reported as not installed: $out"
for bad in "noequals" "=libc.so.6" "x=" "g=libc.so.6:malloc" "a=l b=l c=l d=l e=l"; do
    out=$(run "$bad" x)
    rc=$?
    [ "$rc" = 2 ] || fail "KHEAP_BENCH_PEERS=\"$bad\": status $rc, want 2 ($out)"
    echo "$out" | grep -q 'KHEAP_BENCH_PEERS' || fail "KHEAP_BENCH_PEERS=\"$bad\": no message naming it ($out)"
done
echo "test_bench_peers: ok"
