#!/usr/bin/env python3
"""benchtable.py BENCH_OUTPUT [CALLGRIND_OPS] - prints the BENCH lines of one kheap-bench run (plain
and hardened twin) as the Markdown tables of docs/allocators.md, one per workload: ns/op (median, with
its min-max spread), the ratios of the medians to glibc and the three peers, footprint, and, if
CALLGRIND_OPS (the output of test/host/callgrind-ops.sh) is given, instructions per operation; under
each table a line with our plain rows' ratios of the minima to tcmalloc and mimalloc.
An allocator named twice (the twin's reference rows: glibc and the peers again) keeps its first row;
the hardened rows' ratios are those the twin printed, to its own reference rows. Standard library only."""
import sys

from benchplot import read_bench  # benchplot.py, next to this file

WORKLOADS = {
    "a": "1,000,000 × alloc 8–64 B + free",
    "b": "as a, one 64 B block held",
    "c": "10,000 slots, random alloc/free, 16 B–64 KiB",
    "p": "producer/consumer, 1,000-slot FIFO, 16–512 B",
    "k": "object-cache bursts of one of 7 sizes, freed LIFO or random",
}
PEERS = ["system", "tcmalloc", "mimalloc", "jemalloc"]


def read_callgrind(path):
    ir = {}
    for line in open(path):
        f = line.split()
        if len(f) == 6:
            ir[(f[1], f[2])] = f[5]
    return ir


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: benchtable.py BENCH_OUTPUT [CALLGRIND_OPS]")
    order, rows = read_bench(sys.argv[1], skip=set())
    ir = read_callgrind(sys.argv[2]) if len(sys.argv) == 3 else {}
    for w, title in WORKLOADS.items():
        names = [a for a in order if (a, w) in rows]
        if not names:
            continue
        print(f"**Workload {w}: {title}**\n")
        head = ["allocator", "ns/op (min–max)"] + [f"/ {'glibc' if p == 'system' else p}" for p in PEERS]
        head += ["footprint (MiB from OS / peak live)", "instructions/op"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for a in names:
            r = rows[(a, w)]
            cells = [a if a != "system" else "glibc (system)", f"{r['ns_per_op']} ({r['min']}–{r['max']})"]
            cells += [r.get(f"vs_{p}", "") for p in PEERS]
            fp = r.get("footprint_ratio", "-")
            if fp != "-" and r.get("mapped", "-") != "-":
                fp += f" ({int(r['mapped']) / 2**20:.2f} / {int(r['peak_live']) / 2**20:.2f})"
            if r.get("failed", "0") != "0":
                fp += f", {r['failed']} failed"
            cells += ["–" if fp == "-" else fp, ir.get((a, w), "")]
            print("| " + " | ".join(cells) + " |")
        print()
        mins = [f"{a} {rows[(a, w)]['vs_tcmalloc_min']} / {rows[(a, w)]['vs_mimalloc_min']}" for a in names
                if a not in PEERS and not a.endswith("_hardened") and rows[(a, w)].get("vs_tcmalloc_min", "-") != "-"]
        if mins:
            print("Minimum over the repetitions as a multiple of tcmalloc's / mimalloc's: " + "; ".join(mins) + ".\n")


if __name__ == "__main__":
    main()
